"""Spans: sets of positions zeroed together (a word's tokens, a word's audio frames), and pooling of
a computed map's rows or columns over spans. Pure Python and numpy.

A span is given as a `(first, end)` tuple or a `range` (end exclusive), or as a list of positions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

__all__ = ["POOLINGS", "Pooling", "Span", "parse_spans", "pool", "word_spans"]

Span = tuple[int, int] | range | Sequence[int]
Pooling = Literal["mean", "max", "first", "sum"]
POOLINGS: tuple[Pooling, ...] = ("mean", "max", "first", "sum")


def _positions(span: Span) -> list[int]:
    if isinstance(span, range):
        return list(span)
    if isinstance(span, tuple) and len(span) == 2:
        return list(range(int(span[0]), int(span[1])))
    return [int(p) for p in span]


def parse_spans(spans: Sequence[Span], n: int, what: str = "positions") -> list[list[int]]:
    """Return each span's positions, checked against `n` positions (`what` names them in errors)."""
    if not len(spans):
        raise ValueError(f"no spans of {what} given: give at least one, or None to zero each position alone")
    out = []
    for k, span in enumerate(spans):
        positions = _positions(span)
        if not positions:
            raise ValueError(f"span #{k} ({span!r}) holds no {what}")
        bad = [p for p in positions if not 0 <= p < n]
        if bad:
            raise ValueError(f"span #{k} ({span!r}) reaches {bad}: there are {n} {what} (0..{n - 1})")
        out.append(sorted(set(positions)))
    return out


def word_spans(word_ids: Sequence[int | None]) -> list[tuple[int, int]]:
    """Return `(first, end)` per word from a tokenizer's `word_ids()` (consecutive tokens of one word);
    a token outside any word (a special token) is a span of its own."""
    spans: list[tuple[int, int]] = []
    for k, w in enumerate(word_ids):
        if spans and w is not None and word_ids[k - 1] == w:
            spans[-1] = (spans[-1][0], k + 1)
        else:
            spans.append((k, k + 1))
    return spans


def pool(maps: np.ndarray, spans: Sequence[Span], axis: Literal["rows", "columns"], how: Pooling) -> np.ndarray:
    """Reduce a map `[..., targets, sources]` over spans of its rows or columns: `mean`, `max`, `first`
    (the span's first position) or `sum` of each span's positions. Returns `[..., spans, sources]` or
    `[..., targets, spans]`.

    This pools a map already computed; it is not span zeroing (distances are not additive: zeroing a
    span at once is `score_pairs(source_spans=...)`).
    """
    if how not in POOLINGS:
        raise ValueError(f"unknown pooling {how!r}; choose from: {', '.join(POOLINGS)}")
    if axis not in ("rows", "columns"):
        raise ValueError(f"axis must be 'rows' or 'columns', not {axis!r}")
    dim = -2 if axis == "rows" else -1
    parsed = parse_spans(spans, maps.shape[dim], axis)
    reduce: dict[str, Callable[..., np.ndarray]] = {"mean": np.mean, "max": np.max, "sum": np.sum}
    parts = []
    for positions in parsed:
        taken = np.take(maps, positions, axis=dim)
        parts.append(np.take(taken, 0, axis=dim) if how == "first" else reduce[how](taken, axis=dim))
    return np.stack(parts, axis=dim)
