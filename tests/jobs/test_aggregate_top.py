"""The aggregate's top examples (`top_examples.parquet`, `vzcore.statistics.top`) are the examples
`vzcore.queries.top_examples` finds by reading every map, with the same values, in the same order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("zarr")

from jobs.aggregate import AggregateConfig, aggregate
from tests.jobs.test_aggregate_vectorised import METHODS, _store
from vzcore.queries import top_examples
from vzcore.statistics import TOP_STATISTICS, TopExamples
from vzcore.store.completion import rebuild_index
from vzcore.store.reader import open_store


# k: fewer than the corpus's examples; more (every example with a value kept)
@pytest.mark.parametrize(
    ("causal", "dtype", "negative", "k"),
    [(False, "float16", False, 4), (True, "float32", True, 4), (True, "float16", False, 1000)],
)
def test_top_table_is_top_examples(tmp_path, causal, dtype, negative, k):
    path = tmp_path / "s.zarr"
    _store(path, causal, dtype, negative)  # 1..13 tokens, ties, zero and NaN rows, failures, two parts
    assert rebuild_index(str(path)) == 2
    store = open_store(path)
    aggregate(str(path), tmp_path / "agg", config=AggregateConfig(plots=False, top_examples=k), log=lambda *a: None)
    table = pd.read_parquet(tmp_path / "agg/top_examples.parquet")
    for stat in TOP_STATISTICS:
        for method in METHODS:
            for layer in store.layers:
                got = table[(table.statistic == stat) & (table.method == method) & (table.layer == layer)]
                want = top_examples(store, stat, method, layer, k=k)
                assert got["rank"].tolist() == list(range(len(got)))
                np.testing.assert_allclose(got["value"], want["value"], rtol=1e-12, atol=1e-14)
                assert got["length"].tolist() == want["length"].tolist()
                # The same order; where two values are equal up to rounding, either may come first.
                v = want["value"].to_numpy()
                distinct = np.r_[True, np.diff(v) < -1e-12] & np.r_[np.diff(v) < -1e-12, True]
                assert (
                    got["example_id"].to_numpy()[distinct].tolist() == want["example_id"].to_numpy()[distinct].tolist()
                )
                assert set(got["example_id"]) == set(want["example_id"]) or len(got) == k


def test_top_examples_merge_in_any_order():
    """Kept from one stream, or from two halves merged, the best `k` are the same (ties: lower id)."""
    rng = np.random.default_rng(0)
    ids = rng.permutation(40)
    values = np.round(rng.random((len(TOP_STATISTICS), 40, 2)), 1)  # many ties
    values[:, ::7] = np.nan  # examples without a value are never kept
    whole = TopExamples(1, 2, 5)
    whole.add(0, ids, ids + 1, values)
    a, b = TopExamples(1, 2, 5), TopExamples(1, 2, 5)
    a.add(0, ids[:17], ids[:17] + 1, values[:, :17])
    b.add(0, ids[17:], ids[17:] + 1, values[:, 17:])
    merged = b.merge(a)
    whole.flush()  # offers are ranked a batch at a time
    for x in ("value", "example_id", "length"):
        np.testing.assert_array_equal(getattr(merged, x), getattr(whole, x))
    for si in range(len(TOP_STATISTICS)):
        for layer in range(2):
            ok = ~np.isnan(values[si, :, layer])
            order = sorted(zip(-values[si, ok, layer], ids[ok], strict=True))[:5]
            assert whole.example_id[si, 0, layer].tolist() == [int(i) for _, i in order]
