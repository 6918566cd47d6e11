"""`vz evaluate cue-alignment` and `vz evaluate blank-out` on tiny seeded models with real tokenizers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from jobs.cli import app
from jobs.evaluate.report import blank_out_tables, cue_tables, paper_comparison
from tests.support import TINY
from vzcore.evaluation.probes import Probe

runner = CliRunner()


def _head_model(path, tokenizer, causal: bool) -> str:
    import torch
    import transformers

    torch.manual_seed(0)
    if causal:
        cfg = transformers.LlamaConfig(
            vocab_size=len(tokenizer), num_key_value_heads=2, max_position_embeddings=64, **TINY
        )
        model = transformers.LlamaForCausalLM(cfg)
    else:
        cfg = transformers.BertConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=64, **TINY)
        model = transformers.BertForMaskedLM(cfg)
    model.eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_mlm_dir(tmp_path_factory):
    import transformers

    from vzcore.loading import resolve_short_name

    tok = transformers.AutoTokenizer.from_pretrained(resolve_short_name("minilm"))
    return _head_model(tmp_path_factory.mktemp("tiny-mlm"), tok, causal=False)


@pytest.fixture(scope="module")
def tiny_clm_dir(tmp_path_factory, smollm2_tokenizer):
    return _head_model(tmp_path_factory.mktemp("tiny-clm"), smollm2_tokenizer, causal=True)


def _probe(eid, n, row, cues, phen="ana", cue_at_row=False):
    return Probe(eid, phen, False, tuple(range(n)), tuple("abcdefgh"[:n]), row, tuple(cues), cue_at_row, (), (1,), (2,))


def test_cue_tables_of_known_maps():
    probes = [_probe("a", 4, 3, [1]), _probe("b", 5, 4, [0, 2], phen="dna")]
    rows = {
        ("a", "m"): ([0, 1], np.array([[0.1, 0.5, 0.2, 0.2], [0.0, 1.0, 0.0, 0.0]])),
        ("b", "m"): ([0, 1], np.array([[0.2, 0.2, 0.2, 0.2, 0.2], [0.5, 0.0, 0.0, 0.0, 0.5]])),
    }
    model_side = {"a": {"good": 2.0, "bad": 1.0}, "b": {"good": 0.0, "bad": 1.0}}
    tables = cue_tables(probes, rows, model_side, True, ["m"])
    s = tables["summary.parquet"].set_index(["layer", "phenomenon"])
    assert s.loc[(0, "ana"), "mean"] == pytest.approx(0.5) and s.loc[(0, "dna"), "mean"] == pytest.approx(0.4)
    assert s.loc[(0, "all"), "mean"] == pytest.approx(0.45) and s.loc[(1, "all"), "mean"] == pytest.approx(0.75)
    assert s.loc[(0, "all"), "random"] == pytest.approx((1 / 4 + 2 / 5) / 2)
    assert s.loc[(0, "all"), "examples"] == 2
    peaks = paper_comparison(tables["summary.parquet"]).set_index("method")
    assert peaks.loc["m", "peak"].startswith("0.750") and peaks.loc["m", "at"].startswith("layer 1 of 2")
    acc = tables["accuracy.parquet"].set_index("phenomenon")
    assert acc.loc["ana", "accuracy"] == 1.0 and acc.loc["all", "accuracy"] == 0.5


def test_a_cue_at_the_row_is_reported_apart_and_left_out_of_all():
    probes = [_probe("a", 3, 2, [1]), _probe("b", 3, 2, [2], phen="rpsv", cue_at_row=True)]
    rows = {("a", "m"): ([0], np.array([[0.2, 0.3, 0.5]])), ("b", "m"): ([0], np.array([[0.2, 0.3, 0.5]]))}
    s = cue_tables(probes, rows, {}, False, ["m"])["summary.parquet"].set_index("phenomenon")
    assert s.loc["rpsv (cue at row)", "mean"] == pytest.approx(0.5) and s.loc["all", "mean"] == pytest.approx(0.3)


def test_blank_out_tables_of_a_known_vector():
    probes = [_probe("a", 5, 4, [0])]
    # removed positions 0..3; ranks of the change (1,2,3,4), of the row at layer 0 (2,1,4,3): rho = 0.6
    model_side = {"a": {"positions": [0, 1, 2, 3], "change": [0.1, 0.2, 0.3, 0.4]}}
    rows = {
        ("a", "attention"): ([0, 1], np.array([[0.2, 0.1, 0.4, 0.3, 0.0], [0.4, 0.3, 0.2, 0.1, 0.0]])),
        ("a", "attention_rollout"): ([0, 1], np.array([[0.2, 0.1, 0.4, 0.3, 0.0], [0.1, 0.2, 0.3, 0.4, 0.0]])),
    }
    t = blank_out_tables(probes, rows, model_side, ["attention", "attention_rollout"])["summary.parquet"]
    t = t.set_index(["method", "layer"])
    assert t.loc[("attention", 0), "mean"] == pytest.approx(0.6)
    assert t.loc[("attention", 1), "mean"] == pytest.approx(-1.0)
    assert list(t.loc["attention_rollout"].index) == [1] and t.loc[("attention_rollout", 1), "mean"] == pytest.approx(
        1.0
    )


def test_cue_alignment_on_a_masked_lm_reuses_stored_rows(tiny_mlm_dir, tmp_path):
    out = tmp_path / "cue"
    args = [
        "evaluate",
        "cue-alignment",
        "--model",
        tiny_mlm_dir,
        "--limit",
        "3",
        "--out",
        str(out),
        "--chunk-size",
        "4",
    ]
    res = runner.invoke(app, [*args, "--methods", "value_zeroing,attention,attention_rollout,grad_x_input"])
    assert res.exit_code == 0, res.output
    assert "cue share" in res.output and "LM agreement accuracy" in res.output and "random (expected)" in res.output
    examples = pd.read_parquet(out / "examples.parquet")
    assert len(examples) == 15 * 4 * 2  # examples x methods x layers
    assert examples["share"].between(0, 1).all()
    summary = pd.read_parquet(out / "summary.parquet")
    assert set(summary["phenomenon"]) == {"ana", "dna", "dnaa", "darn", "rpsv", "all"}
    assert ((summary["ci_low"] <= summary["mean"]) & (summary["mean"] <= summary["ci_high"])).all()
    acc = pd.read_parquet(out / "accuracy.parquet")
    assert acc.set_index("phenomenon").loc["all", "pairs"] > 0
    assert (out / "heatmap.png").stat().st_size > 5000 and "different model" in (out / "report.md").read_text()
    again = runner.invoke(app, [*args, "--methods", "value_zeroing,attention,attention_rollout,grad_x_input"])
    assert again.exit_code == 0 and "0 unit(s) scored, 4 reused" in again.output
    pd.testing.assert_frame_equal(pd.read_parquet(out / "summary.parquet"), summary)
    first = runner.invoke(
        app, [*args, "--methods", "value_zeroing,attention,attention_rollout,grad_x_input", "--first-subtoken"]
    )
    assert first.exit_code == 0 and "0 unit(s) scored" in first.output


def test_cue_alignment_on_a_causal_lm_keeps_the_phenomena_that_apply(tiny_clm_dir, tmp_path):
    out = tmp_path / "clm"
    res = runner.invoke(
        app,
        [
            "evaluate",
            "cue-alignment",
            "--model",
            tiny_clm_dir,
            "--limit",
            "2",
            "--out",
            str(out),
            "--methods",
            "value_zeroing,alti,globenc",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (
        "globenc skipped" in res.output and "dna does not apply" in res.output and "dnaa does not apply" in res.output
    )
    summary = pd.read_parquet(out / "summary.parquet")
    assert set(summary["method"]) == {"value_zeroing", "alti"}
    assert {"ana", "darn", "all"} <= set(summary["phenomenon"]) and not {"dna", "dnaa"} & set(summary["phenomenon"])
    assert "rpsv (cue at row)" in set(summary["phenomenon"])
    assert set(pd.read_parquet(out / "accuracy.parquet")["phenomenon"]) >= {"ana", "darn", "all"}


def test_blank_out_with_and_without_a_head(tiny_mlm_dir, tiny_model_dir, tmp_path):
    base = [
        "evaluate",
        "blank-out",
        "--limit",
        "2",
        "--phenomena",
        "ana,dna",
        "--methods",
        "attention,attention_rollout",
    ]
    res = runner.invoke(app, [*base, "--model", tiny_mlm_dir, "--out", str(tmp_path / "b1"), "--removal", "delete"])
    assert res.exit_code == 0, res.output
    s = pd.read_parquet(tmp_path / "b1" / "summary.parquet")
    assert set(s[s["method"] == "attention_rollout"]["layer"]) == {1} and set(
        s[s["method"] == "attention"]["layer"]
    ) == {0, 1}
    assert (s["examples"] == 4).all() and s["mean"].between(-1, 1).all()
    res = runner.invoke(app, [*base, "--model", tiny_model_dir, "--out", str(tmp_path / "b2")])  # no head: cosine
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "b2" / "config.json").read_text())["output"] == "auto"


def test_bad_input_fails_in_one_line_before_any_model_loads(tiny_model_dir, tmp_path, monkeypatch):
    import vzcore

    def refuse(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(vzcore, "load_model", refuse)
    base = ["evaluate", "cue-alignment", "--model", tiny_model_dir, "--out", str(tmp_path / "x")]
    bad_file = tmp_path / "bad.jsonl"
    bad_file.write_text(json.dumps({"text": "The keys are here.", "target": 2}) + "\n")
    cases = [
        (["--phenomena", "ana,xyz"], "unknown phenomenon 'xyz'"),
        (["--methods", "value_zero"], "unknown method 'value_zero'"),
        (["--data", str(tmp_path / "missing.jsonl")], "does not exist"),
        (["--data", str(bad_file)], "missing field(s) cues"),
        (["--blimp", str(tmp_path)], "has no anaphor_number_agreement.jsonl"),
        (["--blimp", "nyu-mll/blimp"], "cannot load nyu-mll/blimp"),  # the hub is offline in tests
    ]
    for extra, message in cases:
        res = runner.invoke(app, [*base, *extra])
        assert res.exit_code == 2, (extra, res.output)
        assert message in res.output and len(res.output.strip().splitlines()) == 1, res.output
    res = runner.invoke(app, ["evaluate", "blank-out", "--model", tiny_model_dir, "--removal", "cut"])
    assert res.exit_code == 2 and "unknown --removal 'cut'" in res.output


def test_users_agreement_data(tiny_mlm_dir, tmp_path):
    data = tmp_path / "mine.jsonl"
    rows = [
        {"text": "The keys to the cabinet are here.", "target": 5, "cues": [1], "good": "are", "bad": "is"},
        {"text": "The key to the cabinets is here.", "target": 5, "cues": [1], "good": "is", "bad": "are"},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "mine"
    res = runner.invoke(
        app,
        [
            "evaluate",
            "cue-alignment",
            "--model",
            tiny_mlm_dir,
            "--data",
            str(data),
            "--out",
            str(out),
            "--methods",
            "attention",
        ],
    )
    assert res.exit_code == 0, res.output
    ex = pd.read_parquet(out / "examples.parquet")
    assert set(ex["phenomenon"]) == {"custom"} and ex["cues"].map(len).eq(1).all()


@pytest.mark.slow
def test_cue_alignment_on_ray_equals_in_process(ray_cluster, tiny_mlm_dir, tmp_path):
    args = [
        "evaluate",
        "cue-alignment",
        "--model",
        tiny_mlm_dir,
        "--limit",
        "2",
        "--methods",
        "value_zeroing,attention",
    ]
    local = runner.invoke(app, [*args, "--out", str(tmp_path / "local")])
    remote = runner.invoke(app, [*args, "--out", str(tmp_path / "ray"), "--address", "auto", "--chunk-size", "3"])
    assert local.exit_code == 0 and remote.exit_code == 0, remote.output
    a, b = (pd.read_parquet(tmp_path / d / "summary.parquet") for d in ("local", "ray"))
    pd.testing.assert_frame_equal(a, b, rtol=1e-4)  # other chunks, other batches: float32 rounding only
