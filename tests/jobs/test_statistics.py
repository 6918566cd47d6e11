"""One definition of the statistics of a map, whoever asks: the aggregate (`vz aggregate`) and the
corpus queries (`top_examples`) count the same rows of the same store (`vzcore.statistics.rows`).

They once differed: `top_examples` also averaged single-entry rows (row 0 of a causal map, the only
row of a one-token text: a single 1) and read unscored (NaN) rows as zero mass on special tokens."""

from __future__ import annotations

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
pd = pytest.importorskip("pandas")

import vzcore  # noqa: E402
from jobs.aggregate import AggregateConfig, aggregate  # noqa: E402
from tests.harness.synthetic_store import init_root, random_maps  # noqa: E402
from vzcore.queries import top_examples  # noqa: E402
from vzcore.statistics import example_masses  # noqa: E402
from vzcore.store.completion import rebuild_index  # noqa: E402
from vzcore.store.writer import ExampleOutcome, write_part  # noqa: E402

METHODS = ("value_zeroing", "attention")
# Each example alone in its length bucket, so the aggregate's bucket rows are that example's values.
LENGTHS = (1, 3, 6, 11)
CFG = AggregateConfig(bucket_edges=(1, 2, 4, 8), max_offset=3, near_max=2, plots=False)


@pytest.fixture(scope="module", params=[False, True], ids=["encoder", "causal"])
def store_path(request, tmp_path_factory):
    """Examples of 1, 3, 6 and 11 tokens with special tokens at both ends and an unscored (NaN) row."""
    causal = request.param
    path = tmp_path_factory.mktemp("stats") / "s.zarr"
    rng = np.random.default_rng(3)
    plan = [{"part": 0, "start": 0, "stop": 2}, {"part": 1, "start": 2, "stop": len(LENGTHS)}]
    init_root(path, methods=METHODS, layers=[0, 1], causal=causal, plan=plan, special_token_ids=[0, 1])
    outcomes = []
    for i, n in enumerate(LENGTHS):
        ids = [0, *rng.integers(2, 9, max(n - 2, 0)).tolist(), 1][:n]
        scores = {m: random_maps(rng, 2, n, causal) for m in METHODS}
        if n > 4:
            for maps in scores.values():
                maps[:, 3] = np.nan  # a row that was not scored
        tokens = [f"t{t}" for t in ids]
        outcomes.append(ExampleOutcome(i, tokens=tokens, token_ids=ids, word_ids=list(range(n)), scores=scores))
    for p in plan:
        part = outcomes[p["start"] : p["stop"]]
        write_part(
            str(path), p["part"], part, METHODS, causal=causal, num_maps=2, start=p["start"], stop=p["stop"],
            store_dtype="float32",
        )  # fmt: skip
    rebuild_index(str(path))
    return path


@pytest.mark.parametrize("statistic", ["self_mass", "context_mass", "special_mass"])
def test_top_examples_rank_by_the_aggregates_per_example_statistic(store_path, statistic, tmp_path):
    aggregate(str(store_path), tmp_path / "agg", config=CFG, log=lambda *a: None)
    layers = pd.read_parquet(tmp_path / "agg" / "layers.parquet")
    labels = {1: "1-1", 3: "2-3", 6: "4-7", 11: "8+"}
    store = vzcore.open_store(store_path)
    for method in METHODS:
        for layer in (0, 1):
            at = layers[(layers.method == method) & (layers.layer == layer)].set_index("bucket")
            want = {e: at.loc[labels[n], statistic] for e, n in enumerate(LENGTHS) if at.loc[labels[n], "rows"] > 0}
            assert len(want) == len(LENGTHS) - 1  # the one-token example has no row that can mix
            got = top_examples(store, statistic, method=method, layer=layer, k=len(LENGTHS))
            assert sorted(got.example_id) == sorted(want), "only examples with a row that counts are ranked"
            np.testing.assert_allclose(got.value, [want[e] for e in got.example_id], rtol=1e-5)


def test_the_rows_that_count_by_hand():
    nan = np.nan
    causal = np.asarray([[1.0, 0, 0], [0.25, 0.75, 0], [nan, nan, nan]])  # row 0: one entry; row 2: unscored
    got = example_masses(causal, True, np.asarray([True, False, False]))
    np.testing.assert_allclose(got, [0.75, 0.25, 0.25])  # row 1 alone
    encoder = np.asarray([[0.5, 0.5], [0.1, 0.9]])
    np.testing.assert_allclose(example_masses(encoder, False, np.asarray([False, True])), [0.7, 0.3, 0.7])
    assert example_masses(np.ones((1, 1)), False, np.ones(1, dtype=bool)) is None  # one token: no row mixes
    assert example_masses(np.full((2, 2), nan), False, np.zeros(2, dtype=bool)) is None
