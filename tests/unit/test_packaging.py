"""The package's own metadata: what pip reads when it installs the project."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _project() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


def test_matplotlib_is_one_that_lays_out_right_to_left_labels():
    (mpl,) = [Requirement(r) for r in _project()["project"]["dependencies"] if r.startswith("matplotlib")]
    assert not mpl.specifier.contains("3.10.9")  # before 3.11 (libraqm) Hebrew draws reversed, Arabic unjoined
