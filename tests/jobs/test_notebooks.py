"""Execute every notebook on a tiny store (random but valid maps): they must run top to bottom."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a Jupyter kernel, another process

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    from tests.harness.synthetic_store import write_random_store

    path = tmp_path_factory.mktemp("nb") / "tiny.zarr"
    write_random_store(path, 12, num_layers=2, part_size=5, lengths=(4, 10), fail_every=6)
    return path


def test_there_is_a_notebook():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: clear outputs before committing"


DRAWS = ("show_example(", "layer_curves(", "distance_profiles(", "agreement_heatmap(", "length_buckets(")


def _images(cell) -> int:
    return sum("image/png" in out.get("data", {}) for out in cell.outputs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_shows_its_figures(path, tiny_store, tmp_path, monkeypatch):
    monkeypatch.setenv("VZ_STORE", str(tiny_store))
    monkeypatch.setenv("VZ_AGGREGATE", str(tmp_path / "agg"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own (inline) backend, as in Jupyter
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(path, as_version=4)
    # The user's own plot after the notebook's cells: the library must have left pyplot's backend alone.
    nb.cells.append(nbformat.v4.new_code_cell("plt.plot([0, 1], [1, 0]);"))
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    assert (tmp_path / "agg" / "report.md").exists()
    drawing = [c for c in nb.cells if c.cell_type == "code" and any(d in c.source for d in DRAWS)]
    assert drawing, "the notebook draws nothing"
    blank = [c.source for c in drawing if not _images(c)]
    assert not blank, f"{path.name}: cells that drew no figure: {blank}"
    assert _images(nb.cells[-1]) == 1, "a plt.plot after the notebook's cells showed nothing"
