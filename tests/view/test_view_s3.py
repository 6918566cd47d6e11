"""The viewer reads a store on object storage (a local moto S3 server) as it reads a local one, and a
static site reads it straight from the bucket over HTTP."""

from __future__ import annotations

import json

import numpy as np
import pytest

s3fs = pytest.importorskip("s3fs")

from typer.testing import CliRunner  # noqa: E402

from jobs.cli import app  # noqa: E402
from tests.harness.static_server import serve_folder  # noqa: E402


def _public(s3_server) -> None:
    """Let a browser read the bucket: anonymous GET, and CORS for pages from elsewhere."""
    import boto3

    endpoint = s3_server["client_kwargs"]["endpoint_url"]
    c = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    rule = {"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "HEAD"], "AllowedHeaders": ["Range"]}
    c.put_bucket_cors(Bucket="vzstore", CORSConfiguration={"CORSRules": [rule | {"ExposeHeaders": ["Content-Range"]}]})
    statement = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::vzstore/*"}
    c.put_bucket_policy(Bucket="vzstore", Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]}))


def test_a_site_of_an_s3_store_reads_the_bucket(s3_server, view_store, view_aggregate, view_data, tmp_path, page):
    fs = s3fs.S3FileSystem(**s3_server)
    fs.put(str(view_store), "vzstore/view.zarr", recursive=True)
    fs.put(str(view_aggregate), "vzstore/view.aggregate", recursive=True)
    endpoint = s3_server["client_kwargs"]["endpoint_url"]
    options = ["key=testing", "secret=testing", f"endpoint_url={endpoint}"]
    site = tmp_path / "site"
    args = ["view", "s3://vzstore/view.zarr", "--aggregate", "s3://vzstore/view.aggregate", "--build", str(site)]
    args += [a for o in options for a in ("--storage-option", o)] + ["--limit", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "--store-url" in result.output  # a browser cannot read s3://
    result = CliRunner().invoke(app, [*args, "--store-url", f"{endpoint}/vzstore/view.zarr"])
    assert result.exit_code == 0, result.output
    overview = json.loads((site / "data/overview.json").read_text())
    assert overview["store"] == f"{endpoint}/vzstore/view.zarr"  # where the page reads it
    assert overview["store_url"] == f"{endpoint}/vzstore/view.zarr"
    assert overview["aggregate"]["layers"] == view_data.overview()["aggregate"]["layers"]
    assert "testing" not in (site / "data/overview.json").read_text()  # the credentials are never written
    _public(s3_server)
    server = serve_folder(site)  # the site on one origin, the store on the bucket's
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/#/example/3?m=attention&l=1")
        page.wait_for_selector("#sentence .tok")
        page.hover("#sentence .tok >> nth=2")
        got = page.eval_on_selector_all("#sentence .tok", "els => els.map(e => Number(e.dataset.value))")
        np.testing.assert_array_equal(got, view_data.maps(3, "attention", 1)[2])
    finally:
        server.shutdown()
        server.server_close()
    # moto answers CORS preflights (a Range header other than `bytes=a-b` needs one) with an error:
    # the site then reads whole objects instead. Real S3 answers them from the bucket's CORS rules.
    page.errors[:] = [e for e in page.errors if "CORS" not in e and "ERR_FAILED" not in e]
