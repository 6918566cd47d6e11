"""Nothing lost, nothing mixed: the job never deletes what is not its own, never mixes two datasets
or two runs in one store, and refuses bad input with one clear line before any model loads."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

zarr = pytest.importorskip("zarr")

import vzcore  # noqa: E402
from jobs.score import JobError, run_job  # noqa: E402
from jobs.score.lease import hold_lease, read_lease  # noqa: E402
from tests.support import TEXTS, job_config  # noqa: E402
from vzcore.queries import find_examples  # noqa: E402


def _thesis(folder):
    (folder / "sub").mkdir(parents=True)
    (folder / "thesis.tex").write_text("years of work")
    (folder / "sub" / "fig.png").write_bytes(b"png")


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_of_other_files_is_refused_and_left_alone(tmp_path, tiny_model_dir, texts_jsonl, overwrite):
    out = tmp_path / "mine"
    _thesis(out)
    with pytest.raises(JobError, match="not empty and not a vz store"):
        run_job(job_config(tmp_path, tiny_model_dir, texts_jsonl, out=str(out), overwrite=overwrite))
    assert (out / "thesis.tex").read_text() == "years of work" and (out / "sub" / "fig.png").exists()
    assert sorted(p.name for p in out.iterdir()) == ["sub", "thesis.tex"]


def test_overwrite_deletes_only_the_stores_own_entries(tmp_path, tiny_model_dir, texts_jsonl):
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, methods=("attention",), limit=3)
    run_job(cfg)
    (tmp_path / "run.zarr" / "notes.txt").write_text("mine")  # the user's, inside the store folder
    s = run_job(cfg.replace(max_length=8, overwrite=True))
    assert s.parts_run == 1 and (tmp_path / "run.zarr" / "notes.txt").read_text() == "mine"
    assert vzcore.open_store(cfg.out).config["max_length"] == 8


def test_another_file_at_the_same_path_is_refused(tmp_path, tiny_model_dir):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:6]))
    cfg = job_config(tmp_path, tiny_model_dir, str(data), methods=("attention",), limit=3)
    run_job(cfg)
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in reversed(TEXTS)))  # other rows, same path
    with pytest.raises(JobError, match="scored from other rows than the dataset holds now"):
        run_job(cfg.replace(limit=6))
    s = run_job(cfg.replace(limit=6, overwrite=True))
    assert s.parts_run == 2
    store = vzcore.open_store(cfg.out)
    assert store.example(0).text == TEXTS[-1] and find_examples(store, text="The end") == [0]


def test_the_same_rows_moved_to_another_path_resume(tmp_path, tiny_model_dir, texts_jsonl):
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, methods=("attention",), limit=3)
    run_job(cfg)
    moved = tmp_path / "moved.jsonl"
    moved.write_text(Path(texts_jsonl).read_text())
    assert run_job(cfg.replace(dataset=str(moved))).parts_run == 0


def test_a_second_run_on_the_same_store_is_refused_naming_the_first(tmp_path, tiny_model_dir, texts_jsonl):
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, methods=("attention",), limit=3)
    run_job(cfg)
    with hold_lease(cfg.location) as mine, pytest.raises(JobError) as refused:  # a first run, still going
        run_job(cfg.replace(methods=("attention_norm",)))
    assert f"process {mine['pid']} on host {socket.gethostname()}" in str(refused.value)
    assert read_lease(cfg.location) is None  # released
    run_job(cfg.replace(methods=("attention_norm",)))
    assert vzcore.open_store(cfg.out).methods == ["attention", "attention_norm"]  # merged, not replaced


def test_a_crashed_runs_lease_is_taken_over(tmp_path, tiny_model_dir, texts_jsonl):
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, methods=("attention",), limit=3)
    run_job(cfg)
    fs, path = cfg.location.filesystem(".vz-lease.json")
    gone = {"host": socket.gethostname(), "pid": 2**22 + 12345, "run_id": "x", "heartbeat": time.time()}
    fs.pipe_file(path, json.dumps(gone).encode())  # its process is gone
    with pytest.warns(UserWarning, match="is gone"):
        run_job(cfg)
    elsewhere = {"host": "node-7", "pid": os.getpid(), "run_id": "y", "heartbeat": time.time()}
    fs.pipe_file(path, json.dumps(elsewhere).encode())  # alive as far as we can tell: another host
    with pytest.raises(JobError, match=r"process .* on host node-7"):
        run_job(cfg)
    with pytest.warns(UserWarning, match="--break-lock"):
        run_job(cfg.replace(break_lock=True))


@pytest.mark.parametrize(
    ("files", "change", "message"),
    [
        ({"empty.txt": ""}, {}, "is empty: nothing to score"),
        ({"empty.csv": "text\n"}, {}, "has no rows"),
        ({"ints.jsonl": '{"text": 1}\n{"text": 2}\n'}, {}, "column 'text' holds int64, not text"),
        ({}, {"limit": -5}, "--limit must be 0"),
        ({}, {"options": (("distance", "manhattan"),)}, "unknown distance 'manhattan'"),
        ({}, {"precision": "float64"}, "unknown --precision 'float64'; choose from: float32, bfloat16, tf32"),
        ({}, {"model": "/no/such/model"}, "no such model path: /no/such/model"),
        ({}, {"model": "nosuchorg/nosuchmodel"}, "no such path or hub model: 'nosuchorg/nosuchmodel'"),
    ],
)
def test_bad_input_is_one_clear_line_and_leaves_nothing(
    tmp_path, tiny_model_dir, no_model_load, files, change, message
):
    data = str(tmp_path / "texts.jsonl")
    (tmp_path / "texts.jsonl").write_text('{"text": "hello"}\n')
    for name, content in files.items():
        (tmp_path / name).write_text(content)
        data = str(tmp_path / name)
    cfg = job_config(tmp_path, tiny_model_dir, data, out=str(tmp_path / "out.zarr")).replace(**change)
    with pytest.raises(JobError, match=message):
        run_job(cfg)
    assert not (tmp_path / "out.zarr").exists()


def test_a_model_folder_without_a_tokenizer_is_refused(tmp_path, texts_jsonl, no_model_load):
    import transformers

    folder = tmp_path / "gpt2-weights-only"
    cfg = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=32)
    transformers.GPT2Model(cfg).save_pretrained(folder)
    with pytest.raises(JobError, match=r"has no usable tokenizer .*save_pretrained"):
        run_job(job_config(tmp_path, str(folder), texts_jsonl))
