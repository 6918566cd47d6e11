"""The word-pooled form of layout v4 (`vz score --store words`, docs/store-layout.md).

Each scored example's maps are stored pooled to its words exactly as `vzcore.ScoreResult.word_level`
pools them (the writer stores what that method returns: a source word's column sums its tokens'
columns, a target word's row is the mean of its tokens' rows), `[L, W, W]` packed as v3 packs a
token map (a causal example's lower triangle over its words), beside the part's usual token arrays
and three word arrays:

- `word_offset` int64 `[m+1]`: example e's words are `[word_offset[e] : word_offset[e+1]]` (`W`);
- `token_word` int32 `[T]`: each token's word within its example (words numbered by first token);
- `word_text` string `[U]`: what each word reads as (`WordResult.words`: its pieces decoded together).

A reader gets a `vzcore.result.WordResult` per example (its word spans from `token_word`); the
aggregator sees each word as a unit (`word_types`).

Pure numpy: the writer, the reader and `vz verify` share these definitions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from vzcore.maps import self_site
from vzcore.result import WordResult, word_units
from vzcore.store.errors import StoreError
from vzcore.tokens import guess_scheme, joined_piece, span_text

__all__ = [
    "STRING_ARRAYS",
    "WORD_ARRAYS",
    "PartWords",
    "check_words",
    "consecutive_words",
    "pooled_words",
    "word_arrays",
    "word_result",
    "word_spans",
    "word_types",
]

WORD_ARRAYS = ("word_offset", "token_word", "word_text")
STRING_ARRAYS = ("tokens", "word_text")  # part arrays of strings


def consecutive_words(token_word: np.ndarray) -> bool:
    """Return whether each word is a run of consecutive tokens, the words in order (token `k`'s word
    is its predecessor's or the next one). Then a causal map pooled to words is lower-triangular:
    every token of a later word comes after every token of an earlier one."""
    token_word = np.asarray(token_word)
    if not len(token_word):
        return True
    steps = np.diff(token_word)
    return bool(token_word[0] == 0 and ((steps == 0) | (steps == 1)).all())


def pooled_words(result: Any) -> tuple[WordResult, np.ndarray]:
    """Return `result.word_level()` (the one pooling) and `[n]` each token's word; a `ValueError` if a
    causal result's words are not runs of consecutive tokens (its word map would not be lower-triangular)."""
    view = result.word_level()
    token_word = np.empty(len(result.token_ids), dtype=np.int64)
    for u, span in enumerate(view.spans):
        token_word[span] = u
    if result.site.causal and not consecutive_words(token_word):
        raise ValueError(
            "its words are not runs of consecutive tokens in order, so its causal word map is not "
            "lower-triangular and cannot be stored as words; store it dense"
        )
    return view, token_word


def word_spans(token_word: Sequence[int] | np.ndarray, count: int) -> list[list[int]]:
    """Return each of `count` words' token positions (ascending) from `[n]` each token's word."""
    spans: list[list[int]] = [[] for _ in range(count)]
    for position, u in enumerate(np.asarray(token_word).tolist()):
        spans[u].append(position)
    return spans


def word_arrays(outcomes: Sequence[Any]) -> dict[str, np.ndarray]:
    """Return the part's word arrays for its outcomes in id order (`ExampleOutcome.from_words`)."""
    scored = [o for o in outcomes if o.size]
    counts = [len(o.word_texts) if o.size else 0 for o in outcomes]
    return {
        "word_offset": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "token_word": np.asarray([w for o in scored for w in o.token_word], dtype=np.int32),
        "word_text": np.asarray([t for o in scored for t in o.word_texts], dtype=object),
    }


class PartWords:
    """A words part's per-example word counts, read once (`token_word` and `word_text` by slices)."""

    def __init__(self, reader: Any) -> None:
        self.offset = reader.array("word_offset").astype(np.int64)
        if len(self.offset) != len(reader.length) + 1 or (np.diff(self.offset) < 0).any():
            raise StoreError(f"part {reader.part}: its word offsets do not match its {len(reader.length)} examples")
        self.size = np.diff(self.offset)  # `[m]` words per example: its maps' rows and columns


def word_result(reader: Any, k: int, arrays: tuple[np.ndarray, ...], read: dict, text: str | None) -> WordResult:
    """Return example `k` of a words part as the `WordResult` that `word_level()` gave when it was
    scored: `arrays` are its own `(tokens, token_ids, token_word, word_text)`, `read[method]` its
    `(maps, kept mass)`."""
    tokens, token_ids, token_word, word_text = arrays
    words = [str(t) for t in word_text]
    spans = word_spans(token_word, len(words))
    return WordResult(
        words=words,
        layers=list(reader.info.layers),
        scores={meth: maps for meth, (maps, _) in read.items()},
        spans=spans,
        tokens=[str(t) for t in tokens],
        token_ids=[int(t) for t in token_ids],
        text=text,
        truncated=bool(reader.truncated[k]),
        site=self_site(reader.info.causal),
        kept_mass={meth: mass for meth, (_, mass) in read.items()},
    )


def word_types(reader: Any, a: int, b: int, span: str) -> tuple[np.ndarray, np.ndarray]:
    """Return `(ids [U], pieces [U])` of every word of examples `a..b-1`, the aggregator's units.

    A word of one token is that token (its id and piece: a special token stays special, `.` stays
    punctuation); a longer word is a type of its own: its pieces joined into one
    (`vzcore.tokens.joined_piece`, so it reads as the word) and a negative id hashed from that piece
    (never a token id, the same in every part and process)."""
    t0, t1 = int(reader.token_offset[a]), int(reader.token_offset[b])
    token_ids = np.asarray(reader.array("token_ids", slice(t0, t1), span), dtype=np.int64)
    pieces = [str(p) for p in reader.array("tokens", slice(t0, t1), span)]
    token_word = np.asarray(reader.array("token_word", slice(t0, t1), span), dtype=np.int64)
    ids: list[int] = []
    out: list[str] = []
    for k in range(a, b):
        s0, s1 = int(reader.token_offset[k]) - t0, int(reader.token_offset[k + 1]) - t0
        own = pieces[s0:s1]
        scheme = guess_scheme(own)
        for span_ in word_spans(token_word[s0:s1], int(reader.words.size[k])):
            if len(span_) == 1:
                ids.append(int(token_ids[s0 + span_[0]]))
                out.append(own[span_[0]])
            else:
                piece = joined_piece([own[i] for i in span_], scheme)
                digest = hashlib.blake2b(piece.encode(), digest_size=8).digest()
                ids.append(-1 - (int.from_bytes(digest, "little") >> 2))
                out.append(piece)
    return np.asarray(ids, dtype=np.int64), np.asarray(out, dtype=object)


def check_words(reader: Any) -> None:
    """Check a words part's word arrays against its tokens (`vz verify`): each example's tokens fall
    into its words as `word_level` groups them (from the stored `word_ids`), in order, and each word's
    text is its pieces decoded together. A `StoreError` says what disagrees."""
    part, words = reader.part, reader.words
    token_word = np.asarray(reader.array("token_word"), dtype=np.int64)
    texts = [str(t) for t in reader.array("word_text")]
    word_ids = np.asarray(reader.array("word_ids"), dtype=np.int64)
    pieces = [str(p) for p in reader.array("tokens")]
    offset = np.asarray(reader.token_offset, dtype=np.int64)
    if len(token_word) != offset[-1] or len(texts) != words.offset[-1]:
        raise StoreError(f"part {part}: its word arrays do not match its tokens and word offsets")
    for k in range(len(reader.length)):
        t0, t1 = int(offset[k]), int(offset[k + 1])
        eid = int(reader.example_id[k])
        ids = word_ids[t0:t1]
        want = word_units(None if (ids < 0).all() else [None if w < 0 else int(w) for w in ids], t1 - t0)
        if not np.array_equal(token_word[t0:t1], want) or (t1 > t0 and int(want.max()) + 1 != words.size[k]):
            raise StoreError(f"part {part}: example {eid}'s tokens are not grouped into its words as its word ids say")
        if reader.info.causal and not consecutive_words(want):
            raise StoreError(f"part {part}: example {eid}'s words are not runs of tokens (causal maps need them)")
        own = pieces[t0:t1]
        scheme = guess_scheme(own)
        u0 = int(words.offset[k])
        for u in range(int(words.size[k])):
            if texts[u0 + u] != span_text([own[i] for i in np.flatnonzero(want == u)], scheme):
                raise StoreError(f"part {part}: example {eid}'s word {u} is stored as {texts[u0 + u]!r}, not its text")
