"""The package's own metadata: what pip reads when it installs the project."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

import pytest
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _project() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


def test_the_license_is_an_spdx_expression_that_setuptools_reads_without_a_deprecation():
    setuptools = pytest.importorskip("setuptools")
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    meta = _project()
    assert meta["project"]["license"] == "MIT"  # the table form is deprecated (removed after February 2027)
    (backend,) = [Requirement(r) for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    assert not backend.specifier.contains("76.9")  # SPDX expressions need setuptools 77
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        apply_configuration(Distribution(), str(PYPROJECT))
    assert not [str(w.message) for w in record if "license" in str(w.message).lower()], setuptools.__version__


def test_matplotlib_is_one_that_lays_out_right_to_left_labels():
    (mpl,) = [Requirement(r) for r in _project()["project"]["dependencies"] if r.startswith("matplotlib")]
    assert not mpl.specifier.contains("3.10.9")  # before 3.11 (libraqm) Hebrew draws reversed, Arabic unjoined
