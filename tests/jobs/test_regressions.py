"""Regression tests for the three faults (run against today's layout)."""

from __future__ import annotations

import numpy as np
import pytest

import vzcore
from jobs.score import JobError, run_job
from tests.support import job_config, sample_ids
from vzcore.reference import reference_value_zeroing


def test_a_store_of_some_layers_reads_and_aggregates(tmp_path, tiny_model_dir, texts_jsonl):
    from jobs.aggregate import AggregateConfig, aggregate

    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, layers=(1,), limit=4)
    assert run_job(cfg).exit_code == 0
    store = vzcore.open_store(cfg.out)
    r = store.example(0)
    assert r.layers == [1] and r.scores["value_zeroing"].shape[0] == 1
    summary = aggregate(cfg.out, tmp_path / "agg", config=AggregateConfig(plots=False), log=lambda *a: None)
    assert summary["layers"] == [1]


def test_weights_changed_in_place_are_seen(tiny_builder):
    import torch

    handle = vzcore.load_model(tiny_builder("bert"))
    ids = sample_ids(11, 7)
    vzcore.score(handle, [ids])
    other = tiny_builder("bert")
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.5)
    handle.model.load_state_dict(other.state_dict())
    fast = vzcore.score(handle, [ids])[0].scores["value_zeroing"]
    np.testing.assert_allclose(fast, reference_value_zeroing(handle, ids), atol=1e-5, rtol=0)


def test_bad_precision_is_refused_before_loading(tmp_path, tiny_model_dir, texts_jsonl):
    with pytest.raises(JobError, match="precision"):
        run_job(job_config(tmp_path, tiny_model_dir, texts_jsonl, precision="float64"))
