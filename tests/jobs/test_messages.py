"""What users read: one line naming the fix for bad arguments (exit 2), a short failure summary,
a dry run that counts what will run, one rule for layer indices, and searches that say what they match."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import vzcore
from jobs.cli import app
from jobs.score import run_job
from jobs.score.plan import estimate
from jobs.score.summary import Summary
from tests.support import job_config
from vzcore.queries import find_examples

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explain", "   "], "nothing to explain: missing text"),
        (["explain", "\u200b\u200d\u2060"], "nothing to explain: only invisible characters"),  # today: after loading
        (["explain", "hi", "--model", "/no/such/model"], "no such model path: /no/such/model"),
        (["explain", "hi", "--layer", "-7"], "layer -7 out of range: the model has 6 layers"),
    ],
)
def test_explain_refuses_bad_arguments_in_one_line(args, message, minilm):
    out = runner.invoke(app, args)
    assert out.exit_code == 2 and message in out.output and "Traceback" not in out.output


def test_explain_tells_a_cli_user_the_target_option(tiny_model_dir, no_model_load):
    out = runner.invoke(app, ["explain", "Hello world", "--model", tiny_model_dir, "--method", "grad_x_input"])
    assert out.exit_code == 2 and "pass --target POS" in out.output, out.output
    assert "targets=" not in out.output and out.output.strip().count("\n") == 0  # today: "pass targets=[...]"


@pytest.mark.parametrize("command", ["explain", "show"])
@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("/nonexistent/x.png", "--out /nonexistent/x.png: no such folder /nonexistent; create it first"),
        ("/nonexistent/dir/x.png", "no such folder /nonexistent/dir"),
        ("x.txt", "--out x.txt: its suffix '.txt' is not an image format matplotlib writes; use one of"),
        ("x", "--out x: it has no suffix"),
    ],
)
def test_an_image_out_is_checked_before_any_model_or_store(tmp_path, monkeypatch, no_model_load, command, out, message):
    import vzcore.store.reader

    monkeypatch.setattr(vzcore.store.reader, "open_store", lambda *a, **k: pytest.fail("a store was opened"))
    monkeypatch.chdir(tmp_path)
    args = ["explain", "Hello world"] if command == "explain" else ["show", str(tmp_path / "s.zarr"), "--example", "0"]
    res = runner.invoke(app, [*args, "--out", out])  # today: explain made the folder, show drew then crashed
    assert res.exit_code == 2 and message in res.output and res.output.strip().count("\n") == 0, res.output
    assert not (tmp_path / "nonexistent").exists() and not __import__("os").path.exists("/nonexistent")


def test_explain_on_cuda_without_a_gpu_is_refused(minilm):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = runner.invoke(app, ["explain", "hi", "--device", "cuda"])
    assert out.exit_code == 2 and "torch sees no CUDA GPU here" in out.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layers", "1,a"], "--layers must be comma-separated block indices"),
        (["--option", "distance=manhattan"], "unknown distance 'manhattan'; choose from: cosine, euclidean"),
        (["--precision", "float64"], "unknown --precision 'float64'; choose from: float32, bfloat16, tf32"),
        (["--limit", "-5"], "--limit must be 0 (all rows) or more"),
        (["--actors", "-1"], "--actors must be at least 0 (0: in this process), not -1"),  # today: all three named
        (["--batch-size", "0"], "--batch-size must be at least 1, not 0"),
        (["--part-size", "0"], "--part-size must be at least 1, not 0"),
    ],
)
def test_score_refuses_bad_arguments_in_one_line(tmp_path, tiny_model_dir, texts_jsonl, extra, message):
    args = ["score", "--out", str(tmp_path / "x.zarr"), "--model", tiny_model_dir, "--dataset", texts_jsonl]
    out = runner.invoke(app, [*args, *extra])
    assert out.exit_code == 2, out.output
    assert message in out.output and out.output.strip().count("\n") == 0
    assert not (tmp_path / "x.zarr").exists()


def test_the_failure_summary_counts_by_reason_and_shows_a_few():
    s = Summary(store="s")
    s.failures = {i: f"ValueError: reason {i % 7}" for i in range(40)}
    lines = [line for line in s.lines() if line.startswith("failed")]
    assert len(lines) == 6 and lines[0] == "failed       6 × ValueError: reason 0 (examples 0, 7, 14, ...)"
    assert lines[-1].startswith("failed       10 more, for 2 other reasons")


def test_dry_run_counts_causal_pairs_and_truncations(tmp_path, tiny_model_dir, texts_jsonl):
    enc = estimate([4], layers=1, hidden=8, ffn=16, causal=False, methods=["value_zeroing"], itemsize=2)
    dec = estimate([4], layers=1, hidden=8, ffn=16, causal=True, methods=["value_zeroing"], itemsize=2)
    assert (enc.pairs, dec.pairs) == (16, 10) and dec.flops < enc.flops
    s = run_job(job_config(tmp_path, tiny_model_dir, texts_jsonl, dry_run=True, max_length=6))
    assert "examples     8 (1 empty, 4 to be truncated)" in "\n".join(s.plan_lines)


def test_dry_run_counts_only_the_target_rows(tmp_path, tiny_model_dir, texts_jsonl):
    kw = dict(layers=2, hidden=8, ffn=16, methods=["value_zeroing"], itemsize=2)
    for causal in (False, True):
        full = estimate([4, 3], causal=causal, **kw)
        last = estimate([4, 3], causal=causal, targets="last", **kw)
        assert last.pairs == (4 + 3) * 2 and not last.bound and last.flops < full.flops  # one row of n per layer
        assert last.store_bytes < full.store_bytes
        mask = estimate([4, 3], causal=causal, targets="mask", **kw)
        assert (mask.pairs, mask.bound) == (full.pairs, True)  # rows known only once tokenised
    assert sum("  at most " in line for line in mask.lines()) == 3 and "at most" not in " ".join(last.lines())

    def plan(targets):
        s = run_job(job_config(tmp_path, tiny_model_dir, texts_jsonl, dry_run=True).replace(targets=targets))
        return {line.split()[0]: line.split()[1:] for line in s.plan_lines}

    full, last, column = plan("all"), plan("last"), plan("column=n")
    tokens = int(last["tokens"][0])
    assert int(last["pairs"][0]) == tokens * 2  # today: as for every row (n² per layer)
    assert int(full["pairs"][0]) > int(last["pairs"][0])
    assert column["pairs"] == ["at", "most", full["pairs"][0]] and column["FLOPs"][:2] == ["at", "most"]


def test_the_summary_and_the_bar_measure_from_the_first_ready_worker(
    tmp_path, tiny_model_dir, texts_jsonl, monkeypatch
):
    import time

    import jobs.score.driver as driver

    real = driver.load_scorer

    def slow(spec):
        time.sleep(0.5)  # a slow start (the model loading, the cluster starting) is not scoring time
        return real(spec)

    monkeypatch.setattr(driver, "load_scorer", slow)
    t0 = time.perf_counter()
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, methods=("attention",), limit=3)
    first = run_job(cfg)
    assert first.startup_seconds >= 0.5 and first.scoring_seconds < time.perf_counter() - t0 - 0.5
    again = run_job(cfg.replace(limit=8))
    assert 0 < again.bytes_written < again.store_bytes  # what this run wrote, not the whole store
    assert any("written by this run" in line for line in again.lines())


def test_one_rule_for_layer_indices_and_whole_word_search(tmp_path, tiny_model_dir, texts_jsonl):
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, methods=("attention",), limit=4)
    run_job(cfg)
    res = runner.invoke(app, ["show", cfg.out, "--example", "0", "--layer", "-1", "--out", str(tmp_path / "a.png")])
    assert res.exit_code == 0, res.output
    run_job(job_config(tmp_path / "l0", tiny_model_dir, texts_jsonl, methods=("attention",), limit=4, layers=(0,)))
    res = runner.invoke(app, ["show", str(tmp_path / "l0" / "run.zarr"), "--example", "0", "--layer", "-1"])
    assert res.exit_code == 2 and "layer 1 is not in the store; it holds layers [0]" in res.output
    store = vzcore.open_store(cfg.out)
    assert find_examples(store, text="the") == [0, 1]  # substring, any case: "The cat ... the mat", "Hello there!"
    assert (
        find_examples(store, text="the", word=True) == [0]
        and find_examples(store, text="THE", word=True, case=True) == []
    )
    assert find_examples(store, text="he", word=True) == []


def test_a_run_that_scored_nothing_says_so_instead_of_a_nan_rate():
    finished = Summary(store="s", planned_parts=3)  # a rerun on a finished store: no part to score
    lines = finished.lines()
    assert not any("nan" in line for line in lines), lines
    assert "throughput   none: every planned part was already done (nothing to score)" in lines


def test_our_loads_show_no_per_tensor_progress_bars_and_the_callers_own_still_do(tiny_model_dir, capfd):
    import transformers
    from transformers import modeling_gguf_pytorch_utils as gguf_loading

    capfd.readouterr()
    vzcore.load_model(tiny_model_dir)
    assert "Loading weights" not in capfd.readouterr().err  # today: a bar of one step per tensor
    from vzcore.loading import quiet_loading

    with quiet_loading():  # the GGUF reader's own bar (272 steps for SmolLM2), past transformers' hook
        list(gguf_loading.tqdm(range(3), desc="de-quantizing"))
    assert "de-quantizing" not in capfd.readouterr().err
    transformers.AutoModel.from_pretrained(tiny_model_dir)  # a load of the caller's own keeps its bar
    list(gguf_loading.tqdm(range(3), desc="de-quantizing"))
    err = capfd.readouterr().err
    assert "Loading weights" in err and "de-quantizing" in err


def test_truncation_names_example_ids_and_no_indexing_error_scare(tmp_path, tiny_model_dir, caplog):
    import json

    import transformers

    data = tmp_path / "long.jsonl"
    # The tiny model takes 64 tokens; its tokenizer says 512, past which it warns of "indexing errors".
    rows = ["short one.", "word " * 600, "fine.", "word " * 90]
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
    handle = vzcore.load_model(tiny_model_dir)
    handle.tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)  # one that never warned yet
    with pytest.warns(UserWarning, match=r"truncated") as record:
        vzcore.score(handle, rows[1], methods=["attention"])
    assert "indexing errors" not in caplog.text  # the text was truncated: no such risk
    assert "texts #0" in str(record[0].message)
    cfg = job_config(tmp_path, tiny_model_dir, str(data), methods=("attention",), part_size=4)
    with pytest.warns(UserWarning) as record:
        s = run_job(cfg)
    assert s.truncated == 2
    said = [str(w.message) for w in record if "truncated" in str(w.message)]
    assert said == ["part 0: 2 example(s) longer than the model's token limit were truncated to it: 1, 3"], said
