"""A damaged chunk: reading names the part, the array and the examples; aggregation leaves the part
out and says so; `vz verify` finds it and `--repair` unmarks it, so the next run rewrites only it."""

from __future__ import annotations

import glob

import pytest

zarr = pytest.importorskip("zarr")

from typer.testing import CliRunner  # noqa: E402

import vzcore  # noqa: E402
from jobs.aggregate import AggregateConfig, aggregate  # noqa: E402
from jobs.cli import app  # noqa: E402
from jobs.score import run_job  # noqa: E402
from tests.support import job_config  # noqa: E402
from vzcore.store import StoreError  # noqa: E402


def _damage(out: str, part: str, array: str = "scores/attention") -> None:
    chunk = sorted(glob.glob(f"{out}/parts/{part}/{array}/c/*"))[0]
    with open(chunk, "r+b") as f:
        f.truncate(5)


def test_a_damaged_chunk_is_named_skipped_verified_and_repaired(tmp_path, tiny_model_dir, texts_jsonl):
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, methods=("attention",), store_dtype="float16")
    assert run_job(cfg).exit_code == 0
    _damage(cfg.out, "00001")
    store = vzcore.open_store(cfg.out)
    with pytest.raises(StoreError, match=r"part 1: array scores/attention \(example 4\) cannot be read"):
        store.example(4)
    said: list[str] = []
    summary = aggregate(cfg.out, tmp_path / "agg", config=AggregateConfig(plots=False), log=said.append)
    assert summary["parts_used"] == [0, 2] and "1" in summary["parts_skipped"]
    assert any(line.startswith("part 1 left out: ") and "scores/attention" in line for line in said)

    runner = CliRunner()
    res = runner.invoke(app, ["verify", cfg.out])
    assert res.exit_code == 1 and "broken part 1: part 1: array scores/attention" in res.output
    assert "broken part 0" not in res.output and "broken part 2" not in res.output
    res = runner.invoke(app, ["verify", cfg.out, "--repair"])
    assert res.exit_code == 0 and "unmarked 1 part(s)" in res.output
    res = runner.invoke(app, ["verify", cfg.out])  # what is left to score is said, not taken for whole
    assert res.exit_code == 0 and "(2 of 3 parts complete; 1 not complete yet: `vz score` finishes them)" in res.output
    assert run_job(cfg).parts_run == 1  # only the repaired part is rewritten
    res = runner.invoke(app, ["verify", cfg.out])
    assert res.exit_code == 0 and "every complete part reads back whole (3 of 3 parts complete)" in res.output
    assert vzcore.open_store(cfg.out).example(4).scores["attention"].shape[0] == 2


def test_verify_finds_texts_that_are_not_the_rows_a_part_was_scored_from(tmp_path, tiny_model_dir, texts_jsonl):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, methods=("attention",))
    run_job(cfg)
    path = f"{cfg.out}/tables/examples/00002.parquet"  # part 2: examples 6, 7, 8
    table = pq.read_table(path)
    texts = table.column("text").to_pylist()
    texts[1] = "Not what was scored."
    pq.write_table(table.set_column(table.schema.get_field_index("text"), "text", pa.array(texts)), path)
    res = CliRunner().invoke(app, ["verify", cfg.out])
    assert res.exit_code == 1 and "broken part 2: part 2: its texts in tables/ are not the rows" in res.output
