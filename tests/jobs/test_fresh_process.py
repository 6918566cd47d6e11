"""What a fresh Python process sees: `import vzcore` and `import vzcore.store` stay light, and the
documented test command finds the tests' own helpers. (These start processes: not unit tests.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_imports import LAZY_IN_VZCORE, STORE_NEVER_IMPORTS

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # every test starts a process


def _loaded(statement: str, modules) -> list[str]:
    code = f"import sys; {statement}; print(sorted(m for m in {tuple(modules)!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return eval(out.stdout.strip())  # a list of names printed by the line above


def test_importing_vzcore_stays_light():
    assert _loaded("import vzcore", LAZY_IN_VZCORE) == []


def test_opening_a_store_loads_nothing_that_scores_or_draws():
    # a viewer or an aggregator reads stores: today `import vzcore.store` loads torch through vzcore's __init__
    assert _loaded("from vzcore.store.reader import open_store", STORE_NEVER_IMPORTS) == []
    assert _loaded("import vzcore; vzcore.open_store", STORE_NEVER_IMPORTS) == []


def test_the_documented_fast_test_command_imports_the_tests():
    """`.venv/bin/pytest -m "not slow"` (the console script, not `python -m pytest`) finds `tests.support`."""
    pytest_bin = Path(sys.executable).with_name("pytest")
    target = "tests/families/test_fast_path.py"  # imports tests.support; collecting it imports it
    done = subprocess.run([str(pytest_bin), "-q", "--collect-only", target], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "tests collected" in done.stdout or "test collected" in done.stdout
