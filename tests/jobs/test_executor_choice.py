"""One choice of executor for every job: the same options on score, aggregate and evaluate; evaluation
placed as scoring is (GPUs, the multi-node refusal); no unit carries a secret. The clusters here are
fakes (no Ray starts): `connect` yields a made-up cluster and `RayExecutor` records what it was asked."""

from __future__ import annotations

import os
import pickle
import secrets
from contextlib import contextmanager

import pytest
from typer.testing import CliRunner

import cluster.connect
import cluster.ray_executor
from cluster.connect import ClusterInfo
from cluster.executor import InProcessExecutor
from jobs.cli import app
from tests.harness.synthetic_store import write_random_store

runner = CliRunner()
AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_PROFILE")


class Asked(Exception):
    """Raised by the fake Ray executor when a run starts: the test has what it wanted to see."""


@pytest.fixture
def fake_ray(monkeypatch):
    """Make `connect` yield a cluster the test sets and `RayExecutor` record its arguments; yields both records."""
    seen = {"cluster": ClusterInfo(started_here=False, nodes=1, resources={"CPU": 8.0, "GPU": 2.0})}

    @contextmanager
    def connect(address, **kwargs):
        seen["address"] = address
        yield seen["cluster"]

    class RayExecutor:
        def __init__(self, **kwargs):
            seen["executor"] = kwargs

        def run(self, *args, **kwargs):
            raise Asked()

    monkeypatch.setattr(cluster.connect, "connect", connect)
    monkeypatch.setattr(cluster.ray_executor, "RayExecutor", RayExecutor)
    return seen


def _evaluate(model: str, out, *extra: str):
    args = ["evaluate", "cue-alignment", "--model", model, "--limit", "2", "--methods", "attention"]
    return runner.invoke(app, [*args, "--out", str(out), *extra])


def test_evaluation_on_ray_asks_for_gpus_as_scoring_does(fake_ray, tiny_model_dir, tmp_path):
    res = _evaluate(tiny_model_dir, tmp_path / "ev", "--address", "10.0.0.1:6379", "--device", "cuda")
    assert isinstance(res.exception, Asked), res.output
    assert fake_ray["address"] == "10.0.0.1:6379"
    asked = fake_ray["executor"]
    assert (asked["workers"], asked["gpus"], asked["cpus"]) == (1, 1.0, 1.0)


def test_evaluation_writing_a_local_folder_is_refused_on_several_nodes(fake_ray, tiny_model_dir, tmp_path):
    fake_ray["cluster"] = ClusterInfo(started_here=False, nodes=2, resources={"CPU": 8.0})
    out = tmp_path / "ev"
    res = _evaluate(tiny_model_dir, out, "--address", "auto")
    assert res.exit_code == 2, res.output
    assert f"{out} is a local path but the cluster has 2 nodes" in res.output
    assert "executor" not in fake_ray and not out.exists()  # refused before anything ran or was written


def test_aggregate_on_a_local_cluster_with_actors(fake_ray, tmp_path):
    store = tmp_path / "s.zarr"
    write_random_store(store, 6, methods=("attention",), num_layers=1, part_size=3, lengths=(3, 5))
    res = runner.invoke(app, ["aggregate", str(store), "--actors", "2", "--cpus-per-actor", "2", "--no-plots"])
    assert isinstance(res.exception, Asked), res.output
    assert fake_ray["address"] is None  # no --address: a local cluster started here
    assert (fake_ray["executor"]["max_in_flight"], fake_ray["executor"]["cpus"]) == (2, 2.0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--device", "tpu"], "--device must be one of auto, cpu, cuda, not 'tpu'"),
        (["--gpus-per-actor", "1.5"], "--gpus-per-actor must be a fraction in (0, 1] or a whole number"),
        (["--actors", "0", "--address", "auto"], "--actors 0 runs in this process, but --address auto"),
    ],
)
@pytest.mark.parametrize("command", ["score", "aggregate", "evaluate"])
def test_every_command_takes_the_same_placement_options(
    command, extra, message, tmp_path, tiny_model_dir, no_model_load
):
    store = tmp_path / "s.zarr"
    args = {
        "score": ["score", "--out", str(store), "--model", tiny_model_dir],
        "aggregate": ["aggregate", str(store)],
        "evaluate": ["evaluate", "cue-alignment", "--model", tiny_model_dir, "--out", str(tmp_path / "ev")],
    }[command]
    res = runner.invoke(app, [*args, *extra])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not store.exists() and not (tmp_path / "ev").exists()


@pytest.fixture
def secret_s3(s3_server, monkeypatch, tmp_path):
    """Storage options of the local S3 server with credentials of this test's own, and nothing else to
    reach it: no AWS variable, no profile, no connection cached by another test."""
    s3fs = pytest.importorskip("s3fs")
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    s3fs.S3FileSystem.clear_instance_cache()
    yield {**s3_server, "key": f"AKID{secrets.token_hex(6)}", "secret": f"vz-secret-{secrets.token_hex(8)}"}
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def sent(monkeypatch) -> list[bytes]:
    """Record, pickled, what the in-process executor is given to run: the replica factory, every unit
    and every payload as it goes to the worker (after `prepare`)."""
    record: list[bytes] = []
    run = InProcessExecutor.run

    def recording(self, units, step, *, replica=None, prepare=None, **kwargs):
        units = list(units)
        record.extend(pickle.dumps(x) for x in [replica, *units])

        def filled(payload):
            payload = prepare(payload) if prepare else payload
            record.append(pickle.dumps(payload))
            return payload

        return run(self, units, step, replica=replica, prepare=filled, **kwargs)

    monkeypatch.setattr(InProcessExecutor, "run", recording)
    return record


def test_no_unit_carries_a_secret_yet_the_workers_write(secret_s3, sent, tiny_model_dir, texts_jsonl, tmp_path):
    from jobs.aggregate import AggregateConfig, aggregate
    from jobs.score import run_job
    from tests.support import job_config

    out = "s3://vzstore/runs/no-secret.zarr"
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, out=out, methods=("attention",), storage_options=secret_s3)
    summary = run_job(cfg)
    assert summary.exit_code == 0 and summary.scored > 0  # the step wrote with the secrets of its environment
    config = AggregateConfig(bucket_edges=(1, 8), max_offset=2, plots=False)
    done = aggregate(out, tmp_path / "agg", config=config, storage_options=secret_s3, log=lambda *a: None)
    assert done["complete"]
    assert len(sent) > 4
    for blob in sent:
        assert secret_s3["secret"].encode() not in blob and secret_s3["key"].encode() not in blob
    assert not any(name in os.environ for name in AWS_VARIABLES[:3])  # put back after each run
