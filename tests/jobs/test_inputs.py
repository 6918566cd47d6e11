"""What `vz score` reads: rows with nothing to score and the token limit (all in-process, no Ray)."""

from __future__ import annotations

import pytest

pytest.importorskip("zarr")
pytest.importorskip("datasets")

import pandas as pd
from typer.testing import CliRunner

from jobs.cli import app
from jobs.score import run_job
from tests.support import job_config


def _examples(out) -> pd.DataFrame:
    return pd.read_parquet(f"{out}/tables/examples").set_index("example_id")


def _run(tmp_path, model, data, **kw):
    cfg = job_config(tmp_path, model, str(data), methods=("attention",), part_size=10, **kw)
    return cfg, run_job(cfg)


def test_rows_with_nothing_to_score_are_skipped_with_the_reason(tmp_path, tiny_model_dir):
    data = tmp_path / "rows.csv"  # an empty cell reads as null; U+FFFD is a character BERT drops
    data.write_text('text,n\nThe cat sat.,0\n,1\n"   ",2\n"\u200b\u200d",3\n\ufffd,4\nThe end.,5\n', encoding="utf-8")
    cfg, s = _run(tmp_path, tiny_model_dir, data)
    assert (s.scored, s.skipped, s.failed) == (2, 4, 0)  # today: the null failed, three were scored
    ex = _examples(cfg.out)
    assert ex.status.tolist() == ["scored", "skipped", "skipped", "skipped", "skipped", "scored"]
    assert ex.reason.tolist()[1:5] == [
        "missing text",
        "missing text",
        "only invisible characters",
        "no text token (the tokenizer keeps none of its characters)",
    ]


@pytest.mark.parametrize("limit", ["1", "2"])
def test_a_token_limit_with_no_room_for_text_is_refused_before_loading(
    tmp_path, tiny_model_dir, texts_jsonl, no_model_load, limit
):
    args = ["score", "--out", str(tmp_path / "x.zarr"), "--model", tiny_model_dir, "--dataset", texts_jsonl]
    out = CliRunner().invoke(app, [*args, "--actors", "0", "--max-length", limit])  # today: 1 ignored, 2: [CLS] [SEP]
    assert out.exit_code == 2, out.output
    assert out.output.strip() == (
        f"error: --max-length {limit} leaves no room for text: the tokenizer adds 2 special tokens to each text,"
        " so it must be at least 3"
    )
    assert not (tmp_path / "x.zarr").exists()


def test_the_token_limit_is_enforced_and_recorded_per_example(tmp_path, tiny_model_dir, texts_jsonl):
    with pytest.warns(UserWarning, match=r"part 0: 7 example\(s\) longer than 3 tokens were truncated to it: 0, 1"):
        cfg, s = _run(tmp_path, tiny_model_dir, texts_jsonl, max_length=3)
    ex = _examples(cfg.out)
    scored = ex[ex.status == "scored"]
    assert set(scored.length) == {3} and scored.truncated.all() and s.truncated == len(scored)
