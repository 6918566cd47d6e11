"""`vz score --store` and `--targets` in-process (`actors=0`, no Ray): what the job stores, read back
against `vzcore.score` (full maps for top-k, `targets=` for targeted rows)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import json

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

import vzcore  # noqa: E402
from jobs.aggregate import aggregate  # noqa: E402
from jobs.score import JobError, run_job  # noqa: E402
from tests.support import TEXTS, job_config  # noqa: E402
from vzcore.queries import show_example, top_examples  # noqa: E402
from vzcore.store.verify import verify_store  # noqa: E402

METHODS = ["value_zeroing", "attention"]


@pytest.fixture(scope="module")
def library(tiny_model_dir):
    handle = vzcore.load_model(tiny_model_dir)
    ids = [i for i, t in enumerate(TEXTS[:8]) if t]
    results = vzcore.score(handle, [TEXTS[i] for i in ids], methods=METHODS)
    return handle, dict(zip(ids, results, strict=True))


def test_top_k_job_equals_the_dense_job_where_kept_and_zero_elsewhere(tmp_path, tiny_model_dir, texts_jsonl, library):
    _, want = library
    dense_cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl)
    run_job(dense_cfg)
    cfg = dense_cfg.replace(out=str(tmp_path / "topk.zarr"), store_form="top-k=3,threshold=0.01")
    s = run_job(cfg)
    assert s.exit_code == 0 and "top-3 sources per row at or above 0.01" in s.form_line
    dense, store = vzcore.open_store(dense_cfg.out), vzcore.open_store(cfg.out)
    assert dense.layout == 3 and store.layout == 4 and store.info.form.k == 3
    # A dense run of every row records exactly what it did before reduced forms existed.
    assert not {"store_form", "targets"} & (set(dense.config) | set(dense.attrs))
    assert store.config["store_form"] == "top-k=3,threshold=0.01" and store.attrs["store_form"]["k"] == 3
    for eid in want:
        full, got = dense.example(eid), store.example(eid)
        for m in METHODS:
            expect = np.zeros_like(full.scores[m])
            for layer, i in np.ndindex(*full.scores[m].shape[:2]):
                row = full.scores[m][layer, i]
                keep = sorted(sorted(np.flatnonzero(row >= 0.01), key=lambda j: (-row[j], j))[:3])
                expect[layer, i, keep] = row[keep]
            np.testing.assert_array_equal(got.scores[m], expect)
            np.testing.assert_allclose(got.kept_mass[m], expect.sum(-1), atol=1e-5)
    assert verify_store(cfg.out) == []
    summary = aggregate(cfg.out, tmp_path / "agg", log=lambda *a: None)
    assert summary["examples"]["scored"] == len(want) and summary["store_form"]["k"] == 3
    top = top_examples(store, "self_mass", "value_zeroing", 0, k=2)
    assert len(top) == 2
    show_example(store, 0, None, None, True).savefig(tmp_path / "show.png")


def test_targets_last_scores_and_stores_only_the_last_plain_token(tmp_path, tiny_model_dir, texts_jsonl, library):
    handle, _ = library
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl).replace(targets="last")
    run_job(cfg)
    store = vzcore.open_store(cfg.out)
    assert store.layout == 4 and store.info.targets == {"kind": "last"}
    for eid, text in enumerate(TEXTS[:8]):
        if not text:
            continue
        got = store.example(eid)
        last = got.n - 2  # [CLS] ... token [SEP]: the last plain token is before [SEP]
        assert got.scored_rows.tolist() == [i == last for i in range(got.n)]
        ref = vzcore.score(handle, [text], methods=METHODS, targets=[last])[0]
        for m in METHODS:
            np.testing.assert_allclose(got.scores[m][:, last], ref.scores[m][:, last], atol=3e-3)
            assert np.isnan(got.scores[m][:, :last]).all()
    assert verify_store(cfg.out) == []
    for words in (False, True):  # `vz show` draws the stored rows (the others blank)
        show_example(store, 0, None, None, words).savefig(tmp_path / f"show{words}.png")
    summary = aggregate(cfg.out, tmp_path / "agg", log=lambda *a: None)
    rows = json.loads((tmp_path / "agg" / "summary.json").read_text())["examples"]
    assert rows == summary["examples"]


def test_targets_mask_skips_texts_without_a_mask_token(tmp_path, tiny_model_dir):
    data = tmp_path / "m.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["Kristen [MASK] fixed this chair.", "No mask."]))
    cfg = job_config(tmp_path, tiny_model_dir, str(data)).replace(targets="mask")
    s = run_job(cfg)
    assert (s.scored, s.skipped) == (1, 1)
    got = vzcore.open_store(cfg.out).example(0)
    assert got.scored_rows.tolist() == [t == "[MASK]" for t in got.tokens]


@pytest.mark.parametrize(
    ("change", "message"),
    [({"store_form": "sparse"}, "--store must be"), ({"targets": "first"}, "--targets must be")],
)
def test_bad_forms_fail_before_any_model_loads(tmp_path, tiny_model_dir, texts_jsonl, monkeypatch, change, message):
    monkeypatch.setattr(vzcore, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(JobError, match=message):
        run_job(job_config(tmp_path, tiny_model_dir, texts_jsonl).replace(**change))


def test_another_form_on_the_same_store_is_refused(tmp_path, tiny_model_dir, texts_jsonl):
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, limit=3)
    run_job(cfg)
    with pytest.raises(JobError, match="--store form or --targets"):
        run_job(cfg.replace(store_form="auto"))


def test_a_reduced_store_is_resumed_and_extended_as_a_dense_one_is(tmp_path, tiny_model_dir, texts_jsonl):
    once = job_config(tmp_path, tiny_model_dir, texts_jsonl, limit=6).replace(store_form="top-k=3,threshold=0.01")
    run_job(once)
    cfg = once.replace(out=str(tmp_path / "steps.zarr"), limit=3)
    run_job(cfg)
    assert run_job(cfg).exit_code == 0  # the same run again: nothing left to do
    assert run_job(cfg.replace(limit=6)).exit_code == 0  # more rows of the same data
    whole, steps = vzcore.open_store(once.out), vzcore.open_store(cfg.out)
    assert steps.layout == 4 and steps.num_examples == whole.num_examples == 6
    status = whole.examples_table().set_index("example_id")["status"]
    assert status.equals(steps.examples_table().set_index("example_id")["status"])
    for eid in status.index[status == "scored"]:
        a, b = whole.example(eid), steps.example(eid)
        for m in METHODS:
            np.testing.assert_array_equal(a.scores[m], b.scores[m])
    assert verify_store(cfg.out) == []


def test_targets_from_a_dataset_column(tmp_path, tiny_model_dir):
    # Lists of positions here; a column of plain ints, or of both mixed, works the same (below).
    rows = [("The cat sat.", [1]), ("Hello there!", [-2]), ("Value zeroing mixes.", [2, 1, 2]), ("Too far.", [99])]
    data = tmp_path / "c.jsonl"
    data.write_text("".join(json.dumps({"text": t, "pos": p}) + "\n" for t, p in rows))
    cfg = job_config(tmp_path, tiny_model_dir, str(data)).replace(targets="column=pos")
    s = run_job(cfg)
    assert (s.scored, s.skipped) == (3, 1)
    store = vzcore.open_store(cfg.out)
    assert store.info.targets == {"kind": "column", "column": "pos"}
    held = {eid: np.flatnonzero(store.example(eid).scored_rows).tolist() for eid in range(3)}
    n1 = store.example(1).n
    assert held == {0: [1], 1: [n1 - 2], 2: [1, 2]}
    examples = store.examples_table().set_index("example_id")
    assert examples.loc[3, "status"] == "skipped" and "outside the example's" in examples.loc[3, "reason"]
    with pytest.raises(JobError, match="no such column"):
        run_job(cfg.replace(out=str(tmp_path / "x.zarr"), targets="column=nope"))


def test_a_positions_column_may_mix_ints_and_lists(tmp_path, tiny_model_dir):
    # JSON rows mixing `2` and `[3]` (read as a `Json` column): each row's value is used as it is.
    rows = [("The cat sat.", [1]), ("Hello there!", 2), ("Value zeroing mixes.", [2, -1]), ("Too far.", "x")]
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps({"text": t, "pos": p}) + "\n" for t, p in rows))
    cfg = job_config(tmp_path, tiny_model_dir, str(data)).replace(targets="column=pos")
    s = run_job(cfg)  # today: "unexpected ArrowInvalid: cannot mix list and non-list"
    assert (s.scored, s.skipped) == (3, 1)
    store = vzcore.open_store(cfg.out)
    held = {eid: np.flatnonzero(store.example(eid).scored_rows).tolist() for eid in range(3)}
    assert held == {0: [1], 1: [2], 2: [2, store.example(2).n - 1]}
    examples = store.examples_table().set_index("example_id")
    assert examples.loc[3, "status"] == "skipped" and "is not a position" in examples.loc[3, "reason"]


def test_gradient_methods_score_the_target_rows_in_the_job(tmp_path, tiny_model_dir, texts_jsonl, library):
    # Only the chosen rows are scored, which is what the gradient methods need (one backward pass each).
    handle, _ = library
    methods = ("grad_x_input", "value_zeroing")
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, methods=methods, limit=4).replace(targets="last")
    s = run_job(cfg)  # today: refused, "score target rows only, and `vz score` stores full maps"
    assert (s.scored, s.skipped, s.failed) == (3, 1, 0)  # example 2 is empty
    store = vzcore.open_store(cfg.out)
    for eid in (0, 1, 3):
        got = store.example(eid)
        want = vzcore.score(handle, [TEXTS[eid]], methods=list(methods), targets=[got.n - 2])[0]  # before [SEP]
        assert np.flatnonzero(got.scored_rows).tolist() == [got.n - 2]
        for m in methods:
            np.testing.assert_allclose(got.scores[m], want.scores[m], atol=1e-5, err_msg=m)


def test_cli_says_what_auto_stores_and_refuses_a_bad_form(tmp_path, tiny_model_dir, texts_jsonl):
    from typer.testing import CliRunner

    from jobs.cli import app

    args = ["score", "--out", str(tmp_path / "x.zarr"), "--model", tiny_model_dir, "--dataset", texts_jsonl]
    res = CliRunner().invoke(app, [*args, "--dry-run", "--limit", "5", "--store", "auto", "--targets", "last"])
    assert res.exit_code == 0, res.output
    assert "--store auto: 0 of the 5 newly planned examples are longer than 1024 tokens" in res.output
    assert "--targets last: only those rows" in res.output
    res = CliRunner().invoke(app, [*args, "--store", "top-k=8,keep=3"])
    assert res.exit_code == 2 and "--store 'top-k=8,keep=3'" in res.output
