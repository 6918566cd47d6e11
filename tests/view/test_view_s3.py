"""The viewer reads a store on object storage (a local moto S3 server) as it reads a local one."""

from __future__ import annotations

import json

import pytest

s3fs = pytest.importorskip("s3fs")

from typer.testing import CliRunner  # noqa: E402

from jobs.cli import app  # noqa: E402


def test_a_site_of_an_s3_store_holds_the_local_bytes(s3_server, view_store, view_aggregate, view_data, tmp_path):
    fs = s3fs.S3FileSystem(**s3_server)
    fs.put(str(view_store), "vzstore/view.zarr", recursive=True)
    fs.put(str(view_aggregate), "vzstore/view.aggregate", recursive=True)
    endpoint = s3_server["client_kwargs"]["endpoint_url"]
    options = ["key=testing", "secret=testing", f"endpoint_url={endpoint}"]
    args = ["view", "s3://vzstore/view.zarr", "--aggregate", "s3://vzstore/view.aggregate", "--build", str(tmp_path)]
    args += [a for o in options for a in ("--storage-option", o)] + ["--limit", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    overview = json.loads((tmp_path / "data/overview.json").read_text())
    assert overview["store"] == "s3://vzstore/view.zarr"
    assert overview["aggregate"]["layers"] == view_data.overview()["aggregate"]["layers"]
    body = (tmp_path / "data/maps/1/attention/word/layer/2.f32").read_bytes()
    assert body == view_data.maps(1, "attention", 2, "word").tobytes()
    assert "testing" not in (tmp_path / "data/overview.json").read_text()  # the credentials are never written
