"""The scale benchmark runs end to end on tiny stores: one row per size, growth lines, request counts."""

from __future__ import annotations

import pytest

from bench import scale as bench_scale
from bench.s3_counts import have_moto, request_kind

ARGS = ["--sizes", "16,64", "--part-size", "8"]


def _table(out: str, backend: str) -> tuple[list[str], list[dict[str, str]]]:
    """Return the header and rows of `backend`'s table in the benchmark's output."""
    lines = out.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith(f"# {backend}:"))
    header_at = next(k for k in range(start, len(lines)) if lines[k].startswith("examples |"))
    header = lines[header_at].split(" | ")
    rows = []
    for line in lines[header_at + 1 :]:
        if not line[:1].isdigit():
            break
        rows.append(dict(zip(header, line.split(" | "), strict=True)))
    return header, rows


def test_request_kinds():
    assert request_kind("GET", "/b?list-type=2&prefix=s.zarr/") == "LIST"
    assert request_kind("GET", "/b/s.zarr/zarr.json") == "GET"
    assert request_kind("POST", "/b?delete") == "DELETE"
    assert request_kind("HEAD", "/b/s.zarr/zarr.json") == "HEAD"


def test_local_rows_and_growth(capsys):
    bench_scale.main([*ARGS, "--backends", "local"])
    out = capsys.readouterr().out
    header, rows = _table(out, "local")
    assert [r["examples"] for r in rows] == ["16", "64"]
    assert [r["parts"] for r in rows] == ["2", "8"]
    for col in ("open_s", "describe_s", "example_s", "part_s", "aggregate_s", "write_s", "objects", "MB"):
        assert col in header
    assert "# growth from 16 to 64 examples (4x the data):" in out
    assert "linear extrapolation to 10^6 examples" in out  # objects grow with the store
    assert "_req" not in out  # nothing to count locally


@pytest.mark.slow  # about 15 s: a moto server, and every request it serves takes milliseconds
@pytest.mark.skipif(not have_moto(), reason="needs moto_server and s3fs")
def test_s3_request_counts(capsys):
    bench_scale.main([*ARGS, "--backends", "s3"])
    out = capsys.readouterr().out
    _, rows = _table(out, "s3")
    assert [r["examples"] for r in rows] == ["16", "64"]
    for r in rows:
        for step in ("open", "example", "part", "aggregate", "write"):
            assert int(r[f"{step}_req"]) > 0, (step, r)
        assert int(r["describe_req"]) >= 0  # today describe() reads nothing that open did not
    by_kind = out.split("# requests by kind:\n", 1)[1].splitlines()[:2]
    assert by_kind[0].startswith("  16: open ") and "write " in by_kind[0] and "PUT " in by_kind[0]
