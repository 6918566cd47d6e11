"""The viewer's benchmark runs end to end in its `--quick` mode and prints each figure (not timed here)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

import pytest

from tests.support import HANG_S

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="no system Chromium (`make setup` installs it)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright is not installed"),
]


def test_view_benchmark_measures_each_page():
    done = subprocess.run(
        [sys.executable, "-m", "bench.view", "--quick"], capture_output=True, text=True, timeout=HANG_S
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    for name in ("overview", "examples table", "example page, n = 128", "example page, n = 512"):
        assert any(line.startswith(name) and " ms" in line for line in done.stdout.splitlines()), name
