"""`bench/gpu.sh`: its arguments (fast), and its whole `--dry` run on CPUs (slow: a few minutes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import HANG_S

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu.sh"


def _gpu_sh(*args: str, out: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHON"] = sys.executable
    if out is not None:
        env["OUT"] = str(out)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=HANG_S)


def test_the_script_parses_says_what_it_does_and_refuses_unknown_arguments():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    shown = _gpu_sh("--help")
    assert shown.returncode == 0 and "--dry" in shown.stdout and "Gemma 3" in shown.stdout
    bad = _gpu_sh("--fast")
    assert bad.returncode == 2 and "unknown argument --fast" in bad.stderr


@pytest.mark.slow
def test_a_dry_run_on_cpus_runs_every_step(tmp_path):
    done = _gpu_sh("--dry", out=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = (tmp_path / "summary.txt").read_text()
    steps = ["00-environment", "01-gpu-job-tests", "02-family-tests", "04-core-minilm", "05-core-smollm2"]
    for step in [*steps, "06-core-gemma3", "07-job"]:
        line = next((x for x in summary.splitlines() if x.startswith(step + " ")), f"{step}: no line")
        assert "exit 0" in line, line
    assert "03-gemma-cache" in summary and "missing: nothing" in summary
    assert "# summary" in (tmp_path / "07-job.txt").read_text()
