"""Slow: aggregation as Ray tasks equals the local pass; reading a store from S3 (moto)."""

from __future__ import annotations

import pytest

pd = pytest.importorskip("pandas")

from jobs.aggregate import AggregateConfig, aggregate  # noqa: E402
from tests.harness.synthetic_store import write_random_store  # noqa: E402
from vzcore.queries import find_examples  # noqa: E402

pytestmark = pytest.mark.slow
CFG = AggregateConfig(bucket_edges=(1, 8, 16), max_offset=4, plots=False)


def test_ray_tasks_equal_local_pass(ray_cluster, tmp_path):
    store = tmp_path / "s.zarr"
    write_random_store(store, 30, num_layers=2, part_size=7, lengths=(3, 12), causal=True, fail_every=9)
    on_ray = aggregate(str(store), tmp_path / "ray", address="auto", config=CFG, log=lambda *a: None)
    local = aggregate(str(store), tmp_path / "local", config=CFG, log=lambda *a: None)
    assert on_ray["examples"] == local["examples"] == {"scored": 27, "failed": 3}
    for name in ("layers.parquet", "distance.parquet", "agreement.parquet", "token_types.parquet"):
        a, b = pd.read_parquet(tmp_path / "ray" / name), pd.read_parquet(tmp_path / "local" / name)
        pd.testing.assert_frame_equal(a, b, rtol=1e-12)  # merge order differs: float64 rounding only


def test_open_store_from_s3_url(s3_server, tmp_path):
    s3fs = pytest.importorskip("s3fs")
    import vzcore

    local = tmp_path / "s.zarr"
    write_random_store(local, 6, num_layers=1, part_size=3, lengths=(3, 5))
    fs = s3fs.S3FileSystem(**s3_server)
    fs.put(str(local), "vzstore/s.zarr", recursive=True)  # the fixture's bucket
    store = vzcore.open_store("s3://vzstore/s.zarr", storage_options=s3_server)
    assert store.complete and store.num_examples == 6
    want = vzcore.open_store(local).example(4)
    got = store.example(4)
    assert got.tokens == want.tokens and (got.scores["attention"] == want.scores["attention"]).all()
    assert find_examples(store, text="example 5") == [5]
