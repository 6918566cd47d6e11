"""Corpus questions over a whole store, streamed part by part (the store is never held in memory).

`token_rows`: every occurrence of a token type (a raw piece or an id) at a layer, with the map row
it receives (its sources and their weights), as one table. `word_rows`: the same for a word as a
reader sees it (`it`, `café`), whatever pieces the tokenizer cut it into. `top_examples`: the k
examples that rank highest on a per-example statistic of one layer's map, a mean over the rows that
count as `vz aggregate` counts them (`vzcore.statistics.rows`).

All of them read only the done parts, one part at a time, and find occurrences in a part's token
arrays with numpy before reading any map: a part's maps are read only when it holds a hit (and
only the examples that hold one are unpacked).

A word's row follows `ScoreResult.word_level` (the convention of Clark et al., 2019, "What does
BERT look at?"): the weight on a source word is the sum over that word's tokens, and a word's row
is the mean of its tokens' rows. A word is a run of tokens with the same `word_id`; a token with
no word (`[CLS]`, BOS) is a unit of its own; a word reads as its pieces decoded together
(`vzcore.tokens.span_text`: `Ġcaf` + `Ã©` -> `café`).
"""

from __future__ import annotations

import heapq
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import get_args

import numpy as np

from vzcore.maps import layer_position
from vzcore.result import ScoreResult, WordResult, word_units
from vzcore.statistics.rows import MIN_ROW_ENTRIES, example_masses
from vzcore.store.errors import StoreError
from vzcore.store.layout import STATUS_SCORED
from vzcore.store.reader import PartReader, Store
from vzcore.tokens import Scheme, decode_piece, display_text, guess_scheme, sequence_texts, span_text

__all__ = [
    "ROW_COLUMNS",
    "STATISTICS",
    "WORD_ROW_COLUMNS",
    "WORD_TOKEN_ROW_COLUMNS",
    "Occurrence",
    "TokenQuery",
    "WordQuery",
    "token_rows",
    "top_examples",
    "word_rows",
]

ROW_COLUMNS = ("example_id", "position", "source_position", "source_token", "weight")
# A word's row over source words (`sources="word"`) or over source tokens (`sources="token"`).
# `word_position` counts the example's units (words, and tokens outside any word) as
# `ScoreResult.word_level` does; `token_position` is the word's first token, `num_tokens` its length.
_WORD_TARGET = ("example_id", "word_position", "word", "token_position", "num_tokens")
WORD_ROW_COLUMNS = (*_WORD_TARGET, "source_word_position", "source_word", "weight")
WORD_TOKEN_ROW_COLUMNS = (*_WORD_TARGET, "source_position", "source_token", "source_text", "weight")
_TEXT = ("word", "source_word", "source_token", "source_text")
_DTYPES = {"example_id": "int64", "weight": "float32"} | dict.fromkeys(_TEXT, "object")  # the rest: int32


# Per-example statistics of one layer's `[n, n]` map: the mean over the rows that count of what
# each row keeps, takes from context, or puts on some sources (the columns of `example_masses`).
STATISTICS: dict[str, int] = {
    "self_mass": 0,  # most self-mixing: what tokens keep
    "context_mass": 1,  # most mixing from context
    "special_mass": 2,  # most mass on special tokens ([CLS], [SEP], BOS, ...)
    "token_mass": 2,  # most mass on a token type: token=... (a raw piece or an id)
    "word_mass": 2,  # most mass on a word's tokens: word=... (ignore_case=)
}
_NEEDS = {"token_mass": "token", "word_mass": "word"}  # the statistics that need a query, and which


# ---- finding occurrences in a part's token arrays, before any map is read ---------------------
def _units(word_ids: np.ndarray) -> list[np.ndarray]:
    """Return the token positions of each unit of one example, in `ScoreResult.word_level` order:
    a word is its tokens' shared `word_id` (>= 0); a token with none (-1) is a unit of its own."""
    index = word_units([None if w < 0 else int(w) for w in word_ids.tolist()], len(word_ids))
    return [np.flatnonzero(index == u) for u in range(int(index.max()) + 1 if len(index) else 0)]


@dataclass(frozen=True)
class Occurrence:
    """One occurrence in one example: its unit's index (a word's; a token's own position) and token positions."""

    unit: int
    positions: np.ndarray  # `[num_tokens]` positions within the example


@dataclass(frozen=True)
class TokenQuery:
    """A token type: its raw piece (`Ġit`, `##ing`) or its id."""

    token: str | int

    def find(self, reader: PartReader) -> dict[int, list[Occurrence]]:
        """Return example id -> occurrences of the token in one part, from its token array alone."""
        by_id = isinstance(self.token, int | np.integer)
        hits = np.flatnonzero(np.asarray(reader.array("token_ids" if by_id else "tokens")) == self.token)
        owners = np.searchsorted(reader.token_offset, hits, side="right") - 1
        found: dict[int, list[Occurrence]] = {}
        for k, at in zip(owners.tolist(), (hits - reader.token_offset[owners]).tolist(), strict=True):
            found.setdefault(int(reader.example_id[k]), []).append(Occurrence(at, np.asarray([at])))
        return found


@dataclass(frozen=True)
class WordQuery:
    """A word as it reads (`it`, `café`), matched whole against each unit's decoded pieces."""

    word: str
    ignore_case: bool = False
    _may_hold: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)  # piece -> could be in it

    def _norm(self, text: str) -> str:
        return text.casefold() if self.ignore_case else text

    def matches(self, text: str) -> bool:
        return self._norm(text) == self._norm(self.word)

    def _could_be_in(self, piece: str) -> bool:
        """Return whether `piece` may be one of the word's pieces (a superset test, in any scheme):
        its decoded text is in the word, or is only spaces, or holds part of a character."""
        word = self._norm(self.word)
        shown = (display_text(decode_piece(piece, scheme)) for scheme in get_args(Scheme))
        return any("\ufffd" in t or set(t) == {"␣"} or self._norm(t.rstrip(" ")) in word for t in shown)

    def find(self, reader: PartReader) -> dict[int, list[Occurrence]]:
        """Return example id -> occurrences of the word in one part, from its token arrays alone."""
        pieces = np.asarray(reader.array("tokens"))
        if not pieces.size:
            return {}
        kinds, inverse = np.unique(pieces, return_inverse=True)
        kinds_list, cache = kinds.tolist(), self._may_hold  # each piece type is judged once per query
        for piece in kinds_list:
            if piece not in cache:
                cache[piece] = self._could_be_in(piece)
        could = np.fromiter(map(cache.__getitem__, kinds_list), bool, len(kinds_list))[inverse]
        offsets = reader.token_offset
        owners = np.unique(np.searchsorted(offsets, np.flatnonzero(could), side="right") - 1)
        if not len(owners):
            return {}
        word_ids = reader.array("word_ids")
        found: dict[int, list[Occurrence]] = {}
        for k in owners.tolist():
            a, b = int(offsets[k]), int(offsets[k + 1])
            own = pieces[a:b].tolist()
            scheme = guess_scheme(own)  # as `ScoreResult.word_level` labels its words
            for u, ks in enumerate(_units(word_ids[a:b])):
                if could[a + ks].all() and self.matches(span_text([own[i] for i in ks], scheme)):
                    found.setdefault(int(reader.example_id[k]), []).append(Occurrence(u, ks))
        return found


def _query(token: str | int | None, word: str | None, ignore_case: bool) -> TokenQuery | WordQuery:
    if word is not None and token is None:
        if not word.strip():
            raise StoreError("the word is empty")
        return WordQuery(word, ignore_case)
    if token is None or word is not None:
        raise StoreError("give one of token=... (a raw piece or an id) or word=...")
    if isinstance(token, str) and not token:
        raise StoreError("the token is empty")
    return TokenQuery(token)


def _hits(
    store: Store, method: str, query: TokenQuery | WordQuery
) -> Iterator[tuple[list[Occurrence], int, ScoreResult]]:
    """Yield `(occurrences, example id, ScoreResult)` for every scored example holding a hit."""
    for part in store.done_parts([method]):
        reader = store.part_reader(part)
        found = query.find(reader)
        if not found:
            continue  # the part's maps are never read
        for block in reader.iter_results([method], ids=set(found)):
            for eid, result in block:
                yield found[eid], eid, result


# ---- checks, before anything is read ----------------------------------------------------------
def _layer_index(store: Store, layer: int) -> int:
    if store.info.sites and store.info.view is None:  # v5: the queries read one square site at a time
        raise StoreError(
            f"{store.path} holds an encoder-decoder's sites ({', '.join(store.sites)}): query one with "
            "store.site('encoder') or store.site('decoder') (`vz query ... --site NAME`); the cross site relates "
            "decoder tokens to source positions, so a token's rows there are store.example(id).sites['cross']"
        )
    try:
        return layer_position(layer, store.model_num_layers, store.layers, "the store")
    except ValueError as err:
        raise StoreError(str(err)) from None


def _check_tokens(store: Store, what: str) -> None:
    """Refuse a question about token rows or columns of a words store (`--store words`): it holds word maps."""
    if store.info.form.words:
        raise StoreError(
            f"{store.path} holds maps pooled to words (--store words), not token maps: {what} needs token rows; "
            "ask for a word's rows (word_rows(..., sources='word'), `vz query rows --word W`)"
        )


def _check_method(store: Store, method: str) -> None:
    if method not in store.methods:
        raise StoreError(f"store has no method {method!r}; it holds {store.methods}")


def _frame(columns: tuple[str, ...], chunks: dict[str, list]):
    import pandas as pd

    if not chunks[columns[0]]:
        return pd.DataFrame({c: pd.Series(dtype=_DTYPES.get(c, "int32")) for c in columns})
    data = {c: np.concatenate(chunks[c]) for c in columns}
    return pd.DataFrame(data).astype({c: _DTYPES.get(c, "int32") for c in columns})


# ---- the queries ------------------------------------------------------------------------------
def token_rows(store: Store, token: str | int, layer: int, method: str):
    """Return a pandas table of every occurrence of `token` (a raw piece or an id) at `layer`:
    `example_id, position, source_position, source_token, weight`, one row per (occurrence, source)."""
    li = _layer_index(store, layer)
    _check_method(store, method)
    _check_tokens(store, "a token's rows")
    query = _query(token, None, False)
    chunks: dict[str, list] = {c: [] for c in ROW_COLUMNS}
    for occurrences, eid, result in _hits(store, method, query):
        rows = result.scores[method][li]
        for occ in occurrences:
            chunks["example_id"].append(np.full(result.n, eid))
            chunks["position"].append(np.full(result.n, occ.unit))
            chunks["source_position"].append(np.arange(result.n))
            chunks["source_token"].append(np.asarray(result.tokens, dtype=object))
            chunks["weight"].append(rows[occ.unit])
    return _frame(ROW_COLUMNS, chunks)


def word_rows(store: Store, word: str, layer: int, method: str, *, ignore_case: bool = False, sources: str = "word"):
    """Return a pandas table of every occurrence of `word` (as it reads; case-sensitive unless
    `ignore_case`) at `layer`, one row per (occurrence, source): `WORD_ROW_COLUMNS` over the
    example's words (`sources="word"`), or `WORD_TOKEN_ROW_COLUMNS` over its tokens (`"token"`).

    The row is the mean of the word's tokens' rows; a source word's weight sums its tokens'."""
    if sources not in ("word", "token"):
        raise StoreError(f"unknown sources {sources!r}; choose from: word, token")
    li = _layer_index(store, layer)
    _check_method(store, method)
    if sources == "token":
        _check_tokens(store, "sources='token'")
    query = _query(None, word, ignore_case)
    columns = WORD_ROW_COLUMNS if sources == "word" else WORD_TOKEN_ROW_COLUMNS
    chunks: dict[str, list] = {c: [] for c in columns}
    for occurrences, eid, result in _hits(store, method, query):
        if sources == "word":
            view = result.word_level()
            labels, maps = view.words, view.scores[method][li]  # `[W, W]`
        else:
            labels, maps = sequence_texts(result.tokens), result.scores[method][li]  # `[n, n]`
        width = len(labels)
        for occ in occurrences:
            if sources == "word":
                row = maps[occ.unit]
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # an unscored word's row stays NaN
                    row = np.nanmean(maps[occ.positions], axis=0)
            target = {
                "example_id": eid,
                "word_position": occ.unit,
                "word": span_text([result.tokens[i] for i in occ.positions], guess_scheme(result.tokens)),
                "token_position": int(occ.positions[0]),
                "num_tokens": len(occ.positions),
            }
            for c, v in target.items():
                chunks[c].append(np.full(width, v, dtype=object if isinstance(v, str) else None))
            if sources == "word":
                chunks["source_word_position"].append(np.arange(width))
                chunks["source_word"].append(np.asarray(labels, dtype=object))
            else:
                chunks["source_position"].append(np.arange(width))
                chunks["source_token"].append(np.asarray(result.tokens, dtype=object))
                chunks["source_text"].append(np.asarray(labels, dtype=object))
            chunks["weight"].append(row)
    return _frame(columns, chunks)


def _special_units(result: ScoreResult | WordResult, special_ids: np.ndarray) -> np.ndarray:
    """Return `[n]`: which units (columns) are special tokens: a token map's special tokens, or a word
    map's units that are one special token each ([CLS], BOS: `word_level` keeps them units of their own)."""
    special = np.isin(np.asarray(result.token_ids, dtype=np.int64), special_ids)
    if not isinstance(result, WordResult):
        return special
    return np.asarray([len(s) == 1 and bool(special[s[0]]) for s in result.spans], dtype=bool)


def top_examples(
    store: Store,
    statistic: str,
    method: str,
    layer: int,
    k: int = 10,
    *,
    token: str | int | None = None,
    word: str | None = None,
    ignore_case: bool = False,
    min_tokens: int = 1,
):
    """Return the `k` examples with the highest `statistic` (see `STATISTICS`) of `method` at `layer`:
    a pandas table `example_id, value, length` (tokens), `text` (None where the store keeps none),
    highest first (ties: the lower id); a heap of k, whatever the store's size. Each value is a mean
    over the example's rows that count (`vzcore.statistics.rows`: scored rows with at least two
    valid entries, as in `vz aggregate`), so an example with none (one token) is not ranked; nor is
    one shorter than `min_tokens` tokens (special tokens included: short texts, few rows, the
    noisiest values). `token_mass` needs `token=` (a raw piece or an id), `word_mass` needs `word=`:
    the mean weight of a row on that token's (that word's tokens') columns. An example without it
    scores 0 and its maps are not read."""
    import pandas as pd

    if statistic not in STATISTICS:
        raise StoreError(f"unknown statistic {statistic!r}; choose from: {', '.join(STATISTICS)}")
    needs = _NEEDS.get(statistic)
    given = [name for name, v in (("token", token), ("word", word)) if v is not None]
    if given != ([needs] if needs else []):
        want = f"needs {needs}=..." if needs else "takes no token= or word="
        raise StoreError(f"statistic {statistic!r} {want}" + (f" (given: {', '.join(given)})" if given else ""))
    if k < 1:
        raise StoreError(f"k must be at least 1, not {k}")
    if min_tokens < 1:
        raise StoreError(f"min_tokens must be at least 1, not {min_tokens}")
    li = _layer_index(store, layer)
    _check_method(store, method)
    if token is not None:
        _check_tokens(store, "token_mass")
    query = _query(token, word, ignore_case) if needs else None
    column = STATISTICS[statistic]
    special_ids = np.asarray(store.special_token_ids, dtype=np.int64)
    heap: list[tuple[float, int]] = []
    lengths: dict[int, int] = {}  # of the examples in the heap

    def offer(value: float, eid: int, n: int) -> None:
        item = (value, -eid)  # ties: the lower id first
        if len(heap) < k:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            lengths.pop(-heapq.heapreplace(heap, item)[1])
        else:
            return
        lengths[eid] = n

    for part in store.done_parts([method]):
        reader = store.part_reader(part)
        scored = reader.status == STATUS_SCORED
        kept = scored & (reader.length >= max(min_tokens, MIN_ROW_ENTRIES))  # a row has at most n entries
        eligible = dict(zip(reader.example_id[kept].tolist(), reader.length[kept].tolist(), strict=True))
        if not eligible:
            continue
        found = query.find(reader) if query is not None else None
        if found is not None:  # an example without a hit scores 0: its maps are not read
            found = {eid: occ for eid, occ in found.items() if eid in eligible}
            for eid, n in eligible.items():
                if eid not in found:
                    offer(0.0, eid, n)
            if not found:
                continue
            ids: set[int] | None = set(found)
        else:  # every scored example, or only the long enough ones (the others' maps are not read)
            ids = None if len(eligible) == scored.sum() else set(eligible)
        for block in reader.iter_results([method], ids=ids):
            for eid, result in block:
                if found is None:
                    mask = _special_units(result, special_ids)
                else:
                    mask = np.zeros(result.n, dtype=bool)
                    for occ in found[eid]:  # a words store's columns are words: the word's own
                        mask[occ.unit if isinstance(result, WordResult) else occ.positions] = True
                values = example_masses(result.scores[method][li], store.causal, mask)
                if values is not None:  # None: no row counts (every one unscored)
                    offer(float(values[column]), eid, eligible[eid])  # tokens, words store or not
    ranked = sorted(heap, reverse=True)
    best = [-e for _, e in ranked]
    texts = store.texts(best)  # the k texts, from their parts' tables only
    return pd.DataFrame(
        {
            "example_id": pd.Series(best, dtype="int64"),
            "value": pd.Series([v for v, _ in ranked], dtype="float64"),
            "length": pd.Series([lengths[e] for e in best], dtype="int64"),
            "text": pd.Series([texts.get(e) for e in best], dtype="object"),
        }
    )
