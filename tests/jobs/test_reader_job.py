"""The reader and the aggregator on a store written by the real scoring job (in-process, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("zarr")
pytest.importorskip("datasets")

import vzcore
from jobs.aggregate import AggregateConfig, aggregate
from jobs.score import run_job
from tests.support import TEXTS, job_config
from vzcore.queries import find_examples
from vzcore.store.reader import ExampleNotScoredError


def test_job_store_reads_and_aggregates(tmp_path, tiny_model_dir, texts_jsonl):
    out = str(tmp_path / "run.zarr")
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, store_dtype="float16")
    assert run_job(cfg).exit_code == 0
    store = vzcore.open_store(out)
    assert store.complete and store.num_examples == 8 and store.methods == ["value_zeroing", "attention"]
    assert store.config and store.identity and store.has_tables()
    handle = vzcore.load_model(tiny_model_dir)
    want = vzcore.score(handle, [TEXTS[0]], methods=["value_zeroing", "attention"])[0]
    got = store.example(0)
    assert got.tokens == want.tokens and got.word_ids == want.word_ids and got.text == TEXTS[0]
    np.testing.assert_allclose(got.scores["value_zeroing"], want.scores["value_zeroing"], atol=5e-4)
    with pytest.raises(ExampleNotScoredError, match="example 2 has no maps: skipped"):
        store.example(2)
    assert find_examples(store, text="cat") == [0]
    summary = aggregate(out, tmp_path / "agg", config=AggregateConfig(plots=False), log=lambda *a: None)
    assert summary["examples"] == {"scored": 7, "skipped": 1} and summary["complete"]
