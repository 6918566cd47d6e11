"""Every command that opens a store reaches object storage the same way (a local moto S3 server)."""

from __future__ import annotations

import pytest

pytest.importorskip("zarr")
s3fs = pytest.importorskip("s3fs")

from typer.testing import CliRunner  # noqa: E402

from jobs.cli import app  # noqa: E402
from tests.harness.synthetic_store import write_random_store  # noqa: E402

runner = CliRunner()
URL = "s3://vzstore/cmds.zarr"
AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_PROFILE")


@pytest.fixture(scope="module")
def s3_store(s3_server, tmp_path_factory):
    """A finished store copied to the moto bucket (never written to); yields its storage options."""
    local = tmp_path_factory.mktemp("s3") / "cmds.zarr"
    write_random_store(local, 6, methods=("attention",), num_layers=2, part_size=3, lengths=(3, 5))
    s3fs.S3FileSystem(**s3_server).put(str(local), URL.removeprefix("s3://"), recursive=True)
    return s3_server


@pytest.fixture
def no_aws_setup(monkeypatch, tmp_path):
    """No credentials from the environment or a profile, and no S3 connection cached from another test."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    s3fs.S3FileSystem.clear_instance_cache()  # fsspec keeps a filesystem per set of options
    yield
    s3fs.S3FileSystem.clear_instance_cache()


def _option_args(options: dict) -> list[str]:
    endpoint = options["client_kwargs"]["endpoint_url"]
    pairs = [f"key={options['key']}", f"secret={options['secret']}", f"endpoint_url={endpoint}"]
    return [arg for pair in pairs for arg in ("--storage-option", pair)]


def _commands(tmp_path) -> dict[str, list[str]]:
    return {
        "show": ["show", URL, "--example", "1", "--out", str(tmp_path / "ex.png")],
        "query rows": ["query", "rows", URL, "--token-id", "0", "--layer", "0", "--method", "attention"],
        "query top": ["query", "top", URL, "--layer", "0", "--method", "attention", "-k", "2"],
        "aggregate": ["aggregate", URL, "--out", str(tmp_path / "agg"), "--no-plots"],
        "verify": ["verify", URL],
        "score": ["score", "--out", URL.replace(".zarr", "-new.zarr"), "--limit", "2", "--actors", "0"],
    }


@pytest.mark.parametrize("command", ["show", "query rows", "query top", "aggregate", "verify"])
def test_every_store_command_takes_storage_options(s3_store, no_aws_setup, tmp_path, command):
    args = _commands(tmp_path)[command]
    res = runner.invoke(app, [*args, *_option_args(s3_store)])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("command", ["show", "query rows", "query top", "aggregate", "verify", "score"])
def test_missing_credentials_are_named_not_reported_as_no_store(s3_store, no_aws_setup, tmp_path, command):
    endpoint = s3_store["client_kwargs"]["endpoint_url"]
    args = [*_commands(tmp_path)[command], "--storage-option", f"endpoint_url={endpoint}"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert "\n" not in line and "no store at" not in line, line
    for named in ("no credentials", "--storage-option key=", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert named in line, line
    assert not (tmp_path / "agg").exists()


def test_the_aws_variables_stand_in_for_storage_options(s3_store, no_aws_setup, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_store["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_store["secret"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_store["client_kwargs"]["endpoint_url"])
    res = runner.invoke(app, _commands(tmp_path)["show"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ex.png").stat().st_size > 0


def test_an_aggregate_on_object_storage_is_finished_only_by_its_summary(s3_store, no_aws_setup, monkeypatch, tmp_path):
    from jobs.aggregate import AggregateConfig, aggregate
    from jobs.aggregate.out import SUMMARY, WRITING, AggregateOut, OutputError

    store = tmp_path / "s.zarr"
    write_random_store(store, 6, methods=("attention",), num_layers=1, part_size=3, lengths=(3, 5))
    config, out = AggregateConfig(bucket_edges=(1, 8), max_offset=2, plots=False), "s3://vzstore/agg"
    fs, path = AggregateOut(out, s3_store).location.filesystem()  # the instance the aggregator uses (cached)

    def names(prefix: str = path) -> list[str]:
        fs.invalidate_cache()
        return sorted(p.rsplit("/", 1)[-1] for p in fs.ls(prefix, detail=False))

    aggregate(str(store), out, config=config, storage_options=s3_store, log=lambda *a: None)
    assert SUMMARY in names() and "report.md" in names() and WRITING not in names()
    put_file, uploaded = fs.put_file, []

    def cut_short(lpath, rpath, *args, **kwargs):
        if len(uploaded) == 2:
            raise ConnectionError("connection lost")
        uploaded.append(rpath)
        return put_file(lpath, rpath, *args, **kwargs)

    monkeypatch.setattr(fs, "put_file", cut_short)
    with pytest.raises(ConnectionError):
        aggregate(str(store), out, config=config, storage_options=s3_store, log=lambda *a: None)
    assert SUMMARY not in names() and WRITING in names()  # unfinished, and marked as this aggregator's
    monkeypatch.setattr(fs, "put_file", put_file)
    aggregate(str(store), out, config=config, storage_options=s3_store, log=lambda *a: None)  # recognised: replaced
    assert SUMMARY in names() and WRITING not in names()
    fs.pipe_file("vzstore/mine/notes.txt", b"what I found")
    with pytest.raises(OutputError, match=r"holds files this aggregate did not write \(notes.txt\)"):
        aggregate(str(store), "s3://vzstore/mine", config=config, storage_options=s3_store, overwrite=True)
    assert names("vzstore/mine") == ["notes.txt"]
