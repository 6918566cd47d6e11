"""What scoring one text returns, and its word-level view."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from vzcore.maps import Site, self_site
from vzcore.tokens import Scheme, guess_scheme, sequence_texts, span_text

__all__ = ["ScoreResult", "Seq2SeqResult", "SiteMaps", "WordResult", "held_rows", "word_units"]


@dataclass
class ScoreResult:
    """Scores of one text. Every map is `[layer, target i, source j]` float32, rows summing to 1.

    The maps come from `site` (see `vzcore.maps`): its targets' stream indexes the rows, its
    sources' stream the columns. A result holds one token list, which serves as both streams, so
    its site is a self-attention site and every map is `[layers, n, n]` over the `n` tokens — or,
    with `source_spans` (`score(spans=...)`), `[layers, n, spans]`. An audio encoder's positions are
    its frames: `tokens` are their start times in seconds and `token_ids` their indices.
    Rows that were not asked for (see `score(targets=...)`) are NaN; a scored row whose distances
    were all zero stays all zeros (see `zero_rows`). In causal sites `j > i` entries are 0.
    """

    tokens: list[str]
    token_ids: list[int]
    word_ids: list[int | None] | None  # which word each token belongs to, where the tokenizer knows
    layers: list[int]  # block index of each map's first axis
    scores: dict[str, np.ndarray]  # method -> `[layers, targets, sources]`: `[layers, n, n]` here
    text: str | None = None
    offsets: list[tuple[int, int]] | None = None  # character span of each token in `text`
    truncated: bool = False
    scored_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # `[n]`
    site: Site = field(default_factory=lambda: self_site(causal=False))  # what the maps relate
    # Read from a store: method -> `[layers, n]` each row's kept mass, the sum of its stored entries
    # (a top-k row keeps part of its 1; NaN where the row is not stored). Empty when just scored.
    kept_mass: dict[str, np.ndarray] = field(default_factory=dict)

    # Span maps (`score(spans=...)`): column `c` stands for the positions `source_spans[c]` zeroed together.
    source_spans: list[list[int]] | None = None

    def __post_init__(self) -> None:
        if not self.site.square and self.source_spans is None:
            raise ValueError(
                f"a ScoreResult holds one token list; site {self.site.name!r} relates "
                f"{self.site.targets.name} to {self.site.sources.name}"
            )

    @property
    def n(self) -> int:
        """Return the number of tokens: the targets and the sources of every map."""
        return len(self.token_ids)

    @property
    def labels(self) -> list[str]:
        """Return the display text of each token (`Ġhas` -> `has`), from the pieces alone (see `vzcore.tokens`)."""
        return sequence_texts(self.tokens)

    def zero_rows(self, method: str) -> np.ndarray:
        """Return `[layers, n]`: scored target rows whose entries are all zero."""
        maps = self.scores[method]
        return self.scored_rows[None, :] & (maps == 0).all(-1)

    def word_level(self) -> WordResult:
        """Group tokens into words: sum over a source word's tokens, mean over a target word's tokens.

        Tokens outside any word (special tokens such as [CLS] or BOS) stay units of their own.
        """
        if self.source_spans is not None:
            raise ValueError("span maps have spans for columns already: word_level() groups the tokens of square maps")
        index_arr = word_units(self.word_ids, self.n)
        units = range(int(index_arr.max()) + 1 if self.n else 0)
        member = np.zeros((len(units), self.n), dtype=np.float64)  # `[words, n]`
        member[index_arr, np.arange(self.n)] = 1.0
        scheme = guess_scheme(self.tokens)
        labels = [self._unit_label(member[u] > 0, scheme) for u in range(len(units))]
        scores = {}
        for method, maps in self.scores.items():
            summed = maps.astype(np.float64) @ member.T  # sum over source tokens: `[L, n, W]`
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN (unscored) words stay NaN
                means = [np.nanmean(summed[:, member[u] > 0], axis=1) for u in range(len(units))]
            scores[method] = np.stack(means, 1).astype(np.float32)  # `[L, W, W]`
        spans = [np.flatnonzero(member[u] > 0).tolist() for u in units]
        return WordResult(
            words=labels,
            layers=self.layers,
            scores=scores,
            spans=spans,
            tokens=list(self.tokens),
            token_ids=list(self.token_ids),
            text=self.text,
            truncated=self.truncated,
            site=self.site,
        )

    def _unit_label(self, tokens: np.ndarray, scheme: Scheme) -> str:
        return span_text([self.tokens[k] for k in np.flatnonzero(tokens)], scheme)


def held_rows(scores: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Return `[n]` bool: the rows of maps `[layers, n, n]` that hold scores (no NaN in any method and
    layer; a row not scored, as `targets=` or a targeted store leaves it, is NaN)."""
    if not scores:
        return np.ones(n, dtype=bool)
    return ~np.any([np.isnan(s).any(axis=(0, 2)) for s in scores.values()], axis=0).reshape(n)


def word_units(word_ids: list[int | None] | None, n: int) -> np.ndarray:
    """Return `[n]`: each token's unit, the units numbered in order of first appearance. A unit is a
    word (tokens sharing a word id) or a token outside any word (a special token such as [CLS] or BOS,
    or every token when the tokenizer knows no words): `ScoreResult.word_level`'s grouping."""
    units: dict[tuple, int] = {}
    index = [
        units.setdefault(("word", w) if w is not None else ("token", k), len(units))
        for k, w in enumerate(word_ids or [None] * n)
    ]
    return np.asarray(index, dtype=np.int64)


@dataclass
class WordResult:
    """Word-level maps `[layer, target word, source word]`: `ScoreResult.word_level()`'s view, or an
    example of a word-pooled store (`vz score --store words`), which holds only these.

    Row `u` is the mean of word `u`'s tokens' rows (its scored ones: NaN where none was scored), a
    column the sum over that word's tokens, so rows still sum to 1. `spans[u]` are the token
    positions of word `u` (ascending), `tokens` and `token_ids` the pieces it was pooled from.
    """

    words: list[str]
    layers: list[int]
    scores: dict[str, np.ndarray]  # method -> `[layers, W, W]`
    spans: list[list[int]] = field(default_factory=list)  # token positions of each word
    tokens: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    text: str | None = None
    truncated: bool = False
    site: Site = field(default_factory=lambda: self_site(causal=False))  # the token maps' site
    # Read from a store: method -> `[layers, W]` each word row's sum as stored (NaN where not held).
    kept_mass: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Return the number of words: the rows and columns of every map."""
        return len(self.words)

    @property
    def labels(self) -> list[str]:
        """Return each word's display text (as `ScoreResult.labels` is each token's)."""
        return list(self.words)

    @property
    def scored_rows(self) -> np.ndarray:
        """Return `[W]`: the word rows that hold scores (no NaN in any method and layer)."""
        return held_rows(self.scores, self.n)

    def word_level(self) -> WordResult:
        """Return itself: its maps are over words already (so readers of either result read both)."""
        return self


@dataclass
class SiteMaps:
    """One site's maps of one input pair: `[layer, target, source]` float32, rows summing to 1.

    Rows index the site's target stream, columns its sources — or, with `source_spans`, the spans
    of sources zeroed together (column `c` stands for the positions `source_spans[c]`).
    """

    site: Site
    layers: list[int]  # block index (in the site's stack) of each map's first axis
    scores: dict[str, np.ndarray]  # method -> `[layers, targets, sources or spans]`
    source_spans: list[list[int]] | None = None


@dataclass
class Seq2SeqResult:
    """Scores of one (source, target) pair of an encoder–decoder, keyed by site (`encoder`, `decoder`, `cross`).

    The decoder's tokens are its input: the start token, then the target (`target_ids[0]` is the start).
    """

    source_ids: list[int] | None  # encoder token ids (None for audio)
    source_tokens: list[str] | None  # their pieces, where a tokenizer is known
    target_ids: list[int]  # decoder input ids
    target_tokens: list[str] | None
    target_from: str  # "given" (forced decoding of the target) or "greedy" (the model's own output)
    n_source: int  # encoder positions (tokens, or audio frames after the front end)
    sites: dict[str, SiteMaps]
    seconds_per_source: float | None = None  # audio: seconds per encoder position
    source_word_ids: list[int | None] | None = None  # which source word each token belongs to, where known
    target_word_ids: list[int | None] | None = None
