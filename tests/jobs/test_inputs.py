"""What `vz score` reads: missing and invisible rows, the token limit, mixed and nested columns,
splits of data that has none, and formats other than the extension says (all in-process, no Ray)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("zarr")
pytest.importorskip("datasets")

import pandas as pd
from typer.testing import CliRunner

from jobs.cli import app
from jobs.score import JobError, run_job
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


def test_json_nulls_are_missing_text_and_a_nested_field_can_be_chosen(tmp_path, tiny_model_dir):
    data = tmp_path / "docs.jsonl"
    rows = [{"doc": {"text": "Hello there.", "n": 1}}, {"doc": {"text": None, "n": 2}}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg, s = _run(tmp_path, tiny_model_dir, data, text_column="doc.text")  # today: "not in the dataset"
    assert (s.scored, s.skipped, s.failed) == (1, 1, 0)
    assert _examples(cfg.out).reason.tolist() == ["", "missing text"]
    with pytest.raises(JobError, match=r"column 'doc.body' not in the dataset; .*text columns: \['doc.text'\]"):
        _run(tmp_path, tiny_model_dir, data, text_column="doc.body")


def test_a_column_of_mixed_types_is_named_with_the_types_seen(tmp_path, tiny_model_dir, no_model_load):
    data = tmp_path / "mixed.jsonl"
    data.write_text('{"text": "hello"}\n{"text": 42}\n{"text": null}\n{"text": ["a"]}\n')
    with pytest.raises(JobError) as caught:
        _run(tmp_path, tiny_model_dir, data)
    assert str(caught.value) == (  # today: "column 'text' holds Json(decode=True), not text"
        "column 'text' holds values of several types (array, number, string), not text: make every value"
        " a string (rows without text may be null), or choose another column"
    )


@pytest.mark.parametrize("name", ["missing.jsonl", "./missing.jsonl", "~/missing", "a/b/c", "rows.ARROW", "x.tsv"])
def test_a_missing_file_fails_at_once_without_asking_the_hub(tmp_path, tiny_model_dir, monkeypatch, name):
    import datasets

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked")  # today: 26 s of retries, then "unknown dataset"

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    monkeypatch.chdir(tmp_path)
    args = ["score", "--out", str(tmp_path / "x.zarr"), "--model", tiny_model_dir, "--dataset", name]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and f"no such file: {name}" in res.output, res.output


def test_a_missing_file_fails_at_once_for_the_pair_job_too(monkeypatch):
    import datasets

    from jobs.score.data import DatasetError
    from jobs.score.pairdata import open_pairs

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("the hub was asked"))
    with pytest.raises(DatasetError, match=r"^no such file: \./pairs\.jsonl$"):
        open_pairs("./pairs.jsonl", None, "train", "src", "tgt", None, None, audio=False)


def test_an_owner_slash_name_is_still_asked_of_the_hub(monkeypatch):
    import datasets

    from jobs.score.data import DatasetError, open_texts

    asked = []

    def hub(name, *args, **kwargs):
        asked.append(name)
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", hub)
    with pytest.raises(DatasetError, match="unknown dataset 'owner/name'"):
        open_texts("owner/name", None, "train", "text", None)
    assert asked == ["owner/name"]


def test_a_split_is_refused_where_the_data_has_none(tmp_path, tiny_model_dir, texts_jsonl, no_model_load):
    import datasets

    with pytest.raises(JobError, match=r"--split test: .*texts.jsonl is a plain file, with no splits"):
        _run(tmp_path, tiny_model_dir, texts_jsonl, split="test")  # today: the train rows, silently
    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": ["a b", "c d"]}).save_to_disk(str(saved))
    with pytest.raises(JobError, match=r"--split test: .*saved is a saved single dataset, with no splits"):
        _run(tmp_path, tiny_model_dir, saved, split="test")


def test_format_reads_files_whatever_their_extension(tmp_path, tiny_model_dir, no_model_load):
    data = tmp_path / "corpus.cor"
    data.write_text("The cat sat.\nHello there!\n")
    with pytest.raises(JobError, match=r"cannot tell the format of .*corpus.cor: .* or --format text\|csv"):
        _run(tmp_path, tiny_model_dir, data, dry_run=True)
    _, s = _run(tmp_path, tiny_model_dir, data, dry_run=True, format="text")
    assert any(line.startswith("examples     2 ") for line in s.plan_lines), s.plan_lines
    args = ["score", "--out", str(tmp_path / "x.zarr"), "--model", tiny_model_dir, "--dataset", str(data)]
    out = CliRunner().invoke(app, [*args, "--format", "xml"])
    assert out.exit_code == 2 and "unknown --format 'xml'; choose from: text, csv, json, parquet" in out.output


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


def test_a_dataset_under_home_given_with_a_tilde_is_read(tmp_path, monkeypatch):
    """`--dataset=~/rows.jsonl` reaches the program with its `~` (the shell expands only a word's start)."""
    from jobs.score.data import open_texts

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "rows.jsonl").write_text('{"text": "hello there"}\n{"text": "again"}\n')
    assert open_texts("~/rows.jsonl", None, "train", "text", None).count == 2
