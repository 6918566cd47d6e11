"""`vz aggregate --out`: a user's files are never touched, another store's aggregate is not replaced
unless asked, and an interrupted aggregation never leaves a folder that looks finished."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

zarr = pytest.importorskip("zarr")

from typer.testing import CliRunner  # noqa: E402

from jobs.aggregate import AggregateConfig, aggregate  # noqa: E402
from jobs.aggregate.out import OutputError  # noqa: E402
from jobs.cli import app  # noqa: E402
from tests.harness.synthetic_store import write_random_store  # noqa: E402
from vzcore.store.layout import part_path  # noqa: E402
from vzcore.store.reader import open_store  # noqa: E402

runner = CliRunner()
CFG = AggregateConfig(bucket_edges=(1, 8), max_offset=2, plots=False)
ROOT = Path(__file__).resolve().parents[2]


def _store(path: Path, rows: str | None = None) -> Path:
    """A finished store of 6 examples in 2 parts; `rows` stands for another dataset's rows (its parts'
    row hashes differ), scored with the same model, methods and options."""
    write_random_store(path, 6, methods=("attention",), num_layers=1, part_size=3, lengths=(3, 5))
    if rows is not None:
        for k in (0, 1):
            zarr.open_group(str(path), mode="a")[part_path(k)].attrs["data_hash"] = f"{rows}-{k}"
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _aggregate(store: Path, out: Path, *extra: str):
    return runner.invoke(app, ["aggregate", str(store), "--out", str(out), "--no-plots", *extra])


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_of_a_users_files_is_refused_and_left_alone(tmp_path, overwrite):
    store = _store(tmp_path / "s.zarr")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.md").write_text("my own report")
    (out / "data.csv").write_text("a,b\n")
    before = _snapshot(out)
    res = _aggregate(store, out, *(["--overwrite"] if overwrite else []))
    assert res.exit_code == 2, res.output
    assert "holds files this aggregate did not write (data.csv, report.md)" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "s.zarr"]  # nothing left beside it


def test_the_aggregate_of_another_dataset_is_refused_unless_overwrite(tmp_path):
    a, b = _store(tmp_path / "a.zarr", rows="A"), _store(tmp_path / "b.zarr", rows="B")
    assert open_store(a).identity == open_store(b).identity  # same model, methods and options
    out = tmp_path / "agg"
    assert _aggregate(a, out).exit_code == 0
    before = _snapshot(out)
    res = _aggregate(b, out)
    assert res.exit_code == 2 and "holds the aggregate of another store" in res.output, res.output
    assert _snapshot(out) == before
    res = _aggregate(b, out, "--overwrite")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "summary.json").read_text())["source"]["store"] == str(b.resolve())


def test_the_same_store_replaces_its_own_aggregate_even_moved(tmp_path):
    a = _store(tmp_path / "a.zarr", rows="A")
    out = tmp_path / "agg"
    aggregate(str(a), out, config=CFG, log=lambda *x: None)
    stale = out / "agreement.parquet"
    assert stale.exists()
    moved = a.rename(tmp_path / "moved.zarr")  # the same rows at another path: still this store
    summary = aggregate(str(moved), out, config=CFG, log=lambda *x: None)
    assert summary["store"] == str(moved)
    assert json.loads((out / "summary.json").read_text())["store"] == str(moved)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agg", "moved.zarr"]  # no staging left behind


def test_overwrite_never_deletes_a_file_it_did_not_write(tmp_path):
    a, b = _store(tmp_path / "a.zarr", rows="A"), _store(tmp_path / "b.zarr", rows="B")
    out = tmp_path / "agg"
    aggregate(str(a), out, config=CFG, log=lambda *x: None)
    (out / "notes.txt").write_text("what I found")
    before = _snapshot(out)
    with pytest.raises(OutputError, match=r"holds files this aggregate did not write \(notes.txt\)"):
        aggregate(str(b), out, config=CFG, overwrite=True, log=lambda *x: None)
    assert _snapshot(out) == before


@pytest.mark.parametrize("earlier", [False, True], ids=["new", "replacing"])
def test_a_failed_aggregation_leaves_the_folder_as_it_was(tmp_path, monkeypatch, earlier):
    import jobs.aggregate.driver

    store = _store(tmp_path / "s.zarr")
    out = tmp_path / "agg"
    if earlier:
        aggregate(str(store), out, config=CFG, log=lambda *x: None)
    before = _snapshot(out) if earlier else None

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # after the tables were written

    monkeypatch.setattr(jobs.aggregate.driver, "report", interrupted)
    with pytest.raises(KeyboardInterrupt):
        aggregate(str(store), out, config=CFG, log=lambda *x: None)
    assert (_snapshot(out) if earlier else out.exists()) == (before if earlier else False)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["agg", "s.zarr"] if earlier else ["s.zarr"])


@pytest.mark.slow  # starts another process
def test_a_killed_aggregation_never_looks_finished(tmp_path):
    """SIGTERM while the report is written (after the tables): nothing appears at --out."""
    store = _store(tmp_path / "s.zarr")
    out = tmp_path / "agg"
    script = (
        "import os, signal, sys\n"
        "import jobs.aggregate.driver as r\n"
        "r.report = lambda *a, **k: os.kill(os.getpid(), signal.SIGTERM)\n"
        "from jobs.cli import aggregate_main\n"
        f"sys.argv = ['vz', {str(store)!r}, '--out', {str(out)!r}, '--no-plots']\n"
        "aggregate_main()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, proc.stderr
    assert not out.exists()
    res = _aggregate(store, out)  # the next run finishes it
    assert res.exit_code == 0, res.output
    assert (out / "summary.json").exists() and (out / "report.md").exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no store at"),
        (lambda p: zarr.open_group(str(p), mode="w"), "not a vz store"),
        (
            lambda p: (
                write_random_store(p, 3, methods=("attention",), num_layers=1, part_size=3)
                or zarr.open_group(str(p), mode="a")["done"].__setitem__(0, 0)
            ),
            "nothing to aggregate: none of the 1 parts",
        ),
    ],
    ids=["missing", "not-a-store", "no-part-done"],
)
def test_bad_stores_are_one_line_and_exit_2(tmp_path, make, message):
    store = tmp_path / "s.zarr"
    make(store)
    res = _aggregate(store, tmp_path / "agg")
    assert res.exit_code == 2 and message in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "agg").exists()
