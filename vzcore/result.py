"""What scoring one text returns, and its word-level view."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from vzcore.tokens import Scheme, guess_scheme, sequence_texts, span_text

__all__ = ["ScoreResult", "WordResult"]


@dataclass
class ScoreResult:
    """Scores of one text. Every map is `[layer, target i, source j]` float32, rows summing to 1.

    Rows that were not asked for (see `score(targets=...)`) are NaN; a scored row whose distances
    were all zero stays all zeros (see `zero_rows`). In causal models `j > i` entries are 0.
    """

    tokens: list[str]
    token_ids: list[int]
    word_ids: list[int | None] | None  # which word each token belongs to, where the tokenizer knows
    layers: list[int]  # block index of each map's first axis
    scores: dict[str, np.ndarray]  # method -> `[layers, n, n]`
    text: str | None = None
    offsets: list[tuple[int, int]] | None = None  # character span of each token in `text`
    truncated: bool = False
    scored_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # `[n]`

    @property
    def n(self) -> int:
        return len(self.token_ids)

    @property
    def labels(self) -> list[str]:
        """Return the display text of each token (`Ġhas` -> `has`), from the pieces alone (see `vzcore.tokens`)."""
        return sequence_texts(self.tokens)

    def zero_rows(self, method: str) -> np.ndarray:
        """Return `[layers, n]`: scored rows whose entries are all zero."""
        maps = self.scores[method]
        return self.scored_rows[None, :] & (maps == 0).all(-1)

    def word_level(self) -> WordResult:
        """Group tokens into words: sum over a source word's tokens, mean over a target word's tokens.

        Tokens outside any word (special tokens such as [CLS] or BOS) stay units of their own.
        """
        units: list[tuple] = []
        index: list[int] = []
        for k, w in enumerate(self.word_ids or [None] * self.n):
            key = ("word", w) if w is not None else ("token", k)
            if key not in units:
                units.append(key)
            index.append(units.index(key))
        index_arr = np.asarray(index)
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
        return WordResult(words=labels, layers=self.layers, scores=scores)

    def _unit_label(self, tokens: np.ndarray, scheme: Scheme) -> str:
        return span_text([self.tokens[k] for k in np.flatnonzero(tokens)], scheme)


@dataclass
class WordResult:
    """Word-level maps `[layer, target word, source word]`."""

    words: list[str]
    layers: list[int]
    scores: dict[str, np.ndarray]
