"""Spans and pooling (vzcore.spans) against plain loops written from their definitions."""

from __future__ import annotations

import numpy as np
import pytest

from vzcore.spans import POOLINGS, parse_spans, pool, word_spans


def test_word_spans_group_consecutive_tokens_and_keep_specials_alone():
    assert word_spans([None, 0, 0, 1, 2, 2, 2, None]) == [(0, 1), (1, 3), (3, 4), (4, 7), (7, 8)]
    assert word_spans([]) == []


def test_parse_spans_reads_ranges_tuples_and_position_lists():
    assert parse_spans([(0, 2), range(2, 4), [6, 4, 4]], 7) == [[0, 1], [2, 3], [4, 6]]
    with pytest.raises(ValueError, match="holds no"):
        parse_spans([(3, 3)], 7)
    with pytest.raises(ValueError, match=r"reaches \[7\]"):
        parse_spans([[1, 7]], 7)


@pytest.mark.parametrize("how", POOLINGS)
@pytest.mark.parametrize("axis", ["rows", "columns"])
def test_pool_equals_a_loop_over_span_members(how, axis):
    rng = np.random.default_rng(0)
    maps = rng.random((2, 5, 6))
    spans = [(0, 2), [2], [3, 5]] if axis == "columns" else [(0, 2), [2, 4]]
    got = pool(maps, spans, axis, how)
    members = parse_spans(spans, maps.shape[-1 if axis == "columns" else -2])
    for layer in range(2):
        for s, pos in enumerate(members):
            if axis == "columns":
                for i in range(5):
                    vals = [maps[layer, i, j] for j in pos]
                    want = {"mean": sum(vals) / len(vals), "max": max(vals), "first": vals[0], "sum": sum(vals)}[how]
                    assert got[layer, i, s] == pytest.approx(want)
            else:
                for j in range(6):
                    vals = [maps[layer, i, j] for i in pos]
                    want = {"mean": sum(vals) / len(vals), "max": max(vals), "first": vals[0], "sum": sum(vals)}[how]
                    assert got[layer, s, j] == pytest.approx(want)


def test_pool_refuses_unknown_choices():
    with pytest.raises(ValueError, match="unknown pooling 'median'"):
        pool(np.zeros((1, 2, 2)), [(0, 1)], "rows", "median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="axis"):
        pool(np.zeros((1, 2, 2)), [(0, 1)], "layers", "sum")  # type: ignore[arg-type]
