"""The scoring job in-process (`actors=0`, no Ray): store contents, resume, extend, identity, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("zarr")
pytest.importorskip("datasets")

import zarr

import vzcore
from jobs.score import JobError, run_job
from tests.support import TEXTS, job_config
from vzcore.store.completion import complete_methods
from vzcore.store.layout import (
    STATUS_SCORED,
    STATUS_SKIPPED,
    part_path,
    unpack_maps,
)
from vzcore.store.root import read_plan


def _parts(out):
    root = zarr.open_group(out, mode="r")
    return root, {p["part"]: dict(root[part_path(p["part"])].attrs) for p in read_plan(root)}


def test_dry_run_prints_plan_and_writes_nothing(tmp_path, tiny_model_dir, texts_jsonl):
    s = run_job(job_config(tmp_path, tiny_model_dir, texts_jsonl, dry_run=True))
    text = "\n".join(s.plan_lines)
    assert "examples     8 (1 empty, 0 to be truncated)" in text and "FLOPs" in text and "store bytes" in text
    assert "parts        3" in text
    assert not (tmp_path / "run.zarr").exists()


def test_store_matches_library_scores_and_resume_does_nothing(tmp_path, tiny_model_dir, texts_jsonl):
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl)
    s = run_job(cfg)
    assert (s.examples, s.scored, s.skipped, s.failed, s.exit_code) == (8, 7, 1, 0, 0)
    root, parts = _parts(cfg.out)
    assert read_plan(root) == [
        {"part": 0, "start": 0, "stop": 3},
        {"part": 1, "start": 3, "stop": 6},
        {"part": 2, "start": 6, "stop": 8},
    ]
    assert all(complete_methods(a) == ["attention", "value_zeroing"] for a in parts.values())
    handle = vzcore.load_model(tiny_model_dir)
    want = vzcore.score(handle, [t for t in TEXTS[:8] if t], methods=["value_zeroing", "attention"])
    got_ids = []
    k = 0
    for p in read_plan(root):
        g = root[part_path(p["part"])]
        vo = g["value_offset"][:]
        for e, i in enumerate(g["example_id"][:].tolist()):
            got_ids.append(i)
            if not TEXTS[i]:
                assert g["status"][e] == STATUS_SKIPPED and g.attrs["failures"][str(i)] == "missing text"
                continue
            assert g["status"][e] == STATUS_SCORED
            n = int(g["length"][e])
            for m in ("value_zeroing", "attention"):
                maps = unpack_maps(g[f"scores/{m}"][vo[e] : vo[e + 1]], n, n, 2, False)
                np.testing.assert_allclose(maps, want[k].scores[m], atol=1e-4)  # padding differs with batching
            k += 1
    assert got_ids == list(range(8))
    import pandas as pd

    ex = pd.read_parquet(f"{cfg.out}/tables/examples")  # a file per part, read as one table
    assert ex["example_id"].tolist() == list(range(8)) and ex["status"].tolist()[2] == "skipped"
    tok = pd.read_parquet(f"{cfg.out}/tables/tokens")
    scored = ex[ex.length > 0]
    assert tok.groupby("example_id").size().to_dict() == dict(zip(scored.example_id, scored.length, strict=True))

    again = run_job(cfg)
    assert again.parts_run == 0 and again.examples == 0


def test_extend_limit_and_add_method_score_only_what_is_missing(tmp_path, tiny_model_dir, texts_jsonl):
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, methods=("attention",), limit=4)
    run_job(cfg)
    root = zarr.open_group(cfg.out, mode="r")
    before = root[f"{part_path(0)}/scores/attention"][:]
    s = run_job(cfg.replace(limit=9))  # parts [0,3) unchanged; [3,4) re-planned as [3,6); [6,9) new
    assert s.parts_run == 2
    s = run_job(cfg.replace(limit=9, methods=("attention", "attention_norm")))
    assert s.parts_run == 3
    root, parts = _parts(cfg.out)
    assert all(complete_methods(a) == ["attention", "attention_norm"] for a in parts.values())
    np.testing.assert_array_equal(root[f"{part_path(0)}/scores/attention"][:], before)
    assert sorted(root.attrs["identity"]) == ["attention", "attention_norm"]


def test_other_identity_is_refused_unless_overwriting(tmp_path, tiny_model_dir, texts_jsonl):
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, methods=("attention",), limit=3)
    run_job(cfg)
    with pytest.raises(JobError, match="another run"):
        run_job(cfg.replace(max_length=8))
    with pytest.raises(JobError, match="other options"):
        run_job(cfg.replace(precision="bfloat16"))
    s = run_job(cfg.replace(max_length=8, overwrite=True))
    assert s.parts_run == 1


def test_deterministic_failure_is_recorded_and_the_job_succeeds(tmp_path, tiny_model_dir, texts_jsonl, monkeypatch):
    real = vzcore.score

    def flaky(handle, texts, **kw):
        if any("Hello there" in t for t in texts):
            raise RuntimeError("boom on purpose")
        return real(handle, texts, **kw)

    monkeypatch.setattr(vzcore, "score", flaky)
    s = run_job(job_config(tmp_path, tiny_model_dir, texts_jsonl, limit=4))
    assert s.exit_code == 0 and s.failed == 1 and "boom on purpose" in s.failures[1]
    assert "failed       1 × RuntimeError: boom on purpose (example 1)" in s.lines()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"text_column": "body"}, "column 'body' not in the dataset"),
        ({"dataset": "/nonexistent/nowhere.jsonl"}, "no such file: /nonexistent/nowhere.jsonl"),
        ({"methods": ("value_zeroing", "nope")}, "unknown method 'nope'"),
        ({"out": "/proc/vz-cannot-write/run.zarr"}, "cannot write to output"),
        ({"layers": (5,)}, "layer 5 out of range"),
    ],
)
def test_bad_arguments_fail_before_any_model_loads(tmp_path, tiny_model_dir, texts_jsonl, monkeypatch, change, message):
    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(vzcore, "load_model", no_load)
    with pytest.raises(JobError, match=message):
        run_job(job_config(tmp_path, tiny_model_dir, texts_jsonl).replace(**change))


def test_cli_dry_run_and_bad_method(tmp_path, tiny_model_dir, texts_jsonl):
    from typer.testing import CliRunner

    from jobs.cli import app

    args = ["score", "--out", str(tmp_path / "x.zarr"), "--model", tiny_model_dir, "--dataset", texts_jsonl]
    res = CliRunner().invoke(app, [*args, "--dry-run", "--limit", "5"])
    assert res.exit_code == 0, res.output
    assert "examples     5" in res.output
    res = CliRunner().invoke(app, [*args, "--methods", "nope"])
    assert res.exit_code == 2 and "unknown method" in res.output


def test_out_of_memory_halves_the_pair_budget_then_gives_up_on_the_example(
    tmp_path, tiny_model_dir, texts_jsonl, monkeypatch
):
    import torch

    real = vzcore.score
    budgets = []

    def tight(handle, texts, memory_budget, **kw):
        budgets.append(memory_budget)
        if any("cat sat" in t for t in texts) or memory_budget > 16 * 2**20:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(handle, texts, memory_budget=memory_budget, **kw)

    monkeypatch.setattr(vzcore, "score", tight)
    s = run_job(job_config(tmp_path, tiny_model_dir, texts_jsonl, limit=2, part_size=2, methods=("attention",)))
    assert budgets[:3] == [64 * 2**20, 32 * 2**20, 16 * 2**20]  # from vzcore's CPU default, halved
    assert s.exit_code == 0 and s.failed == 1 and s.scored == 1
    assert "OutOfMemoryError" in s.failures[0]
    assert s.oom_halvings >= 2 and any("halved the pair budget" in line for line in s.lines())
    assert s.devices == {"cpu"}


def test_the_comparison_methods_are_scored_into_the_store(tmp_path, tiny_model_dir, texts_jsonl):
    methods = ("value_zeroing", "attention_norm_res", "attention_norm_res_ln", "globenc", "alti", "alti_rollout")
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, methods=methods, limit=4)
    assert run_job(cfg).exit_code == 0
    store = vzcore.open_store(cfg.out)
    got = store.example(0)
    want = vzcore.score(vzcore.load_model(tiny_model_dir), [TEXTS[0]], methods=list(methods))[0]
    for m in methods:
        np.testing.assert_allclose(got.scores[m], want.scores[m], atol=1e-5, err_msg=m)


@pytest.mark.parametrize(
    ("methods", "message"),
    [
        (("grad_x_input",), "score target rows only .*--targets all asks for every row: choose the rows with"),
        (("integrated_gradients", "attention"), "score target rows only"),
    ],
)
def test_methods_the_job_cannot_serve_are_refused_before_loading(
    tmp_path, tiny_model_dir, texts_jsonl, monkeypatch, methods, message
):
    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(vzcore, "load_model", no_load)
    with pytest.raises(JobError, match=message):
        run_job(job_config(tmp_path, tiny_model_dir, texts_jsonl, methods=methods))


def test_a_post_norm_method_on_a_decoder_is_refused_before_loading(
    tmp_path, tiny_smollm2_dir, texts_jsonl, monkeypatch
):
    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(vzcore, "load_model", no_load)
    with pytest.raises(JobError, match="globenc are defined for post-norm encoders only"):
        run_job(job_config(tmp_path, tiny_smollm2_dir, texts_jsonl, methods=("value_zeroing", "globenc")))


def test_a_rerun_of_a_spread_run_does_nothing_and_one_planned_before_the_spread_keeps_its_part(
    tmp_path, tiny_model_dir, texts_jsonl, monkeypatch
):
    """Without --part-size a short run is cut into parts of at least 4 (here 12 rows: 3 parts). Rerunning
    the same command scores nothing; a larger limit keeps every stored part. A store planned by MiB alone
    (as before the spread: one part) keeps its part on a rerun instead of being cut and rescored."""
    import jobs.score.plan as plan

    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, part_size=None, limit=8)
    assert run_job(cfg).parts_run == 2
    grown = job_config(tmp_path, tiny_model_dir, texts_jsonl, part_size=None, limit=12)
    assert run_job(grown).parts_run == 1  # the stored last part (4..8) is kept: only 8..12 is new
    assert run_job(grown).parts_run == 0
    root, _ = _parts(grown.out)
    assert [(p["start"], p["stop"]) for p in read_plan(root)] == [(0, 4), (4, 8), (8, 12)]
    with monkeypatch.context() as m:
        m.setattr(plan, "SPREAD_PARTS", 1)  # as planned before the spread: one part of every row
        old = job_config(tmp_path / "old", tiny_model_dir, texts_jsonl, part_size=None, limit=12)
        assert run_job(old).parts_run == 1
    s = run_job(old)
    root, _ = _parts(old.out)
    assert s.parts_run == 0 and read_plan(root) == [{"part": 0, "start": 0, "stop": 12}]
