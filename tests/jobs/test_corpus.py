"""Corpus queries: every occurrence of a token at a layer with its row, and the top-k examples by a
per-example statistic, streamed part by part; checked against reading every example one by one."""

from __future__ import annotations

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

import vzcore  # noqa: E402
from jobs.synthetic_store import write_random_store  # noqa: E402
from vzcore.store import StoreError  # noqa: E402


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "c.zarr"
    write_random_store(
        path, 40, methods=("value_zeroing", "attention"), num_layers=2, part_size=6, lengths=(4, 9), vocab=30
    )
    return vzcore.open_store(path)


def _every_example(store):
    return [store.example(i) for p in store.done_parts() for i in range(store.parts[p].start, store.parts[p].stop)]


def test_token_rows_are_every_occurrence_with_its_row(store):
    got = store.token_rows("w12", layer=-1, method="attention")
    want = []
    for eid, r in enumerate(_every_example(store)):
        for i, t in enumerate(r.tokens):
            if t == "w12":
                want += [(eid, i, j, r.tokens[j], r.scores["attention"][1, i, j]) for j in range(r.n)]
    assert len(want) > 0 and len(got) == len(want)
    rows = list(zip(got.example_id, got.position, got.source_position, got.source_token, got.weight, strict=True))
    for a, b in zip(rows, want, strict=True):
        assert a[:4] == b[:4] and a[4] == pytest.approx(b[4])
    by_id = store.token_rows(0, layer=0, method="value_zeroing")  # token id 0: the leading [CLS]
    assert set(by_id.position) == {0} and by_id.example_id.nunique() == 40


def test_top_examples_by_a_statistic(store):
    got = store.top_examples("self_mass", method="value_zeroing", layer=1, k=5)
    values = [float(np.mean(np.diagonal(r.scores["value_zeroing"][1]))) for r in _every_example(store)]
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))[:5]
    assert got.example_id.tolist() == order
    np.testing.assert_allclose(got.value, [values[i] for i in order], rtol=1e-6)
    with pytest.raises(StoreError, match="unknown statistic 'nope'; choose from: self_mass"):
        store.top_examples("nope", method="value_zeroing", layer=1)
    with pytest.raises(StoreError, match="layer 7 out of range"):
        store.token_rows("w12", layer=7, method="attention")
