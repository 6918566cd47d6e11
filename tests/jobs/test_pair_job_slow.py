"""Encoder–decoder runs end to end (slow): text pairs on a local Ray cluster, and synthetic speech with the
real Whisper tiny.en; the stores read through `vz show`, `vz aggregate` and the queries."""

from __future__ import annotations

import csv
import json
import math
import wave

import numpy as np
import pytest

pytest.importorskip("zarr")
pytest.importorskip("datasets")

from typer.testing import CliRunner

from jobs.cli import app
from jobs.score import run_job
from tests.support import job_config
from vzcore.speech import espeak_available, synthesise
from vzcore.store.reader import open_store

runner = CliRunner()


@pytest.mark.slow
def test_text_pairs_on_ray_actors(ray_cluster, tmp_path, tiny_t5_dir):
    data = tmp_path / "pairs.jsonl"
    sources = ["The house is small.", "Many teenagers were helping.", "Kristen has fixed this chair.", "Yes."]
    rows = [{"src": sources[k % 4], "tgt": None if k % 5 == 4 else f"Das ist Satz {k}."} for k in range(24)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = job_config(tmp_path, tiny_t5_dir, str(data), source_column="src", target_column="tgt", limit=24,
                     part_size=6, actors=2)  # fmt: skip
    s = run_job(cfg)
    assert (s.scored, s.failed, s.exit_code) == (24, 0, 0) and s.parts_run == 4
    store = open_store(cfg.out)
    assert store.complete and store.example(4).target_from == "greedy"
    out = runner.invoke(app, ["aggregate", cfg.out, "--out", str(tmp_path / "agg")])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["show", cfg.out, "--example", "3", "--out", str(tmp_path / "e.png")])
    assert out.exit_code == 0, out.output


@pytest.mark.slow
@pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_synthetic_speech_with_whisper_tiny_en(tmp_path):
    try:
        from vzcore.loading import resolve_short_name

        resolve_short_name("whisper-tiny.en")
    except ModuleNotFoundError as e:
        pytest.skip(str(e))
    texts = ["The cat opened the door.", "My brother read the letter."]
    seconds = []
    with open(tmp_path / "speech.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["file", "text"])
        for k, text in enumerate(texts):
            s = synthesise(text)
            seconds.append(s.audio.seconds)
            with wave.open(str(tmp_path / f"u{k}.wav"), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(s.audio.rate)
                w.writeframes((np.clip(s.audio.samples, -1, 1) * 32767).astype("<i2").tobytes())
            out.writerow([f"u{k}.wav", text if k else ""])  # the first: greedy
        out.writerow(["missing.wav", "nothing"])  # bad audio: one line in the failure table
    cfg = job_config(tmp_path, "whisper-tiny.en", str(tmp_path / "speech.csv"), source_column="file",
                     target_column="text", sites=("decoder", "cross"), layers=(-1,), limit=3)  # fmt: skip
    s = run_job(cfg)
    assert (s.scored, s.failed) == (2, 1) and "no such audio file" in s.failures[2]
    store = open_store(cfg.out)
    greedy = store.example(0)
    # the positions are the frames that hold the utterance (20 ms each), not Whisper's 1500-frame window
    frames = math.ceil(seconds[0] / 0.02 - 1e-9)
    assert greedy.target_from == "greedy" and greedy.source_ids is None and greedy.n_source == frames < 1500
    heard = "".join(t for t in greedy.target_tokens if not t.startswith("<|")).replace("Ġ", " ").strip().lower()
    assert "opened the door" in heard  # Whisper's own transcript of the synthetic utterance
    assert greedy.sites["cross"].scores["value_zeroing"].shape == (1, len(greedy.target_ids), frames)
    out = runner.invoke(app, ["aggregate", cfg.out, "--out", str(tmp_path / "agg")])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["show", cfg.out, "--example", "1", "--site", "cross", "--out", str(tmp_path / "e.png")])
    assert out.exit_code == 0, out.output
