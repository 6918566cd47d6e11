"""Choosing and placing an executor (`cluster.where`) and giving workers their secrets
(`cluster.credentials`), on fake clusters: no Ray is started or imported."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from cluster.connect import ClusterError, ClusterInfo
from cluster.credentials import environment, split_secrets, worker_env
from cluster.executor import InProcessExecutor, Unit
from cluster.where import Placement, Where, open_executor, plan_on


@dataclass(frozen=True)
class Place:
    """A place workers reach, as `vzcore.store.Location` is one (cluster/ never imports vzcore)."""

    path: str
    storage_options: dict

    @property
    def is_url(self) -> bool:
        return "://" in self.path


S3 = {"key": "AKID", "secret": "s3cr3t", "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}}
GPU_NODE = ClusterInfo(started_here=False, nodes=1, resources={"CPU": 8.0, "GPU": 2.0})
TWO_NODES = ClusterInfo(started_here=False, nodes=2, resources={"CPU": 6.0})


def test_each_command_keeps_its_default():
    # score: 1 actor on a local cluster; aggregate and evaluate: in this process unless told otherwise
    assert Where.given(actors=None, address=None, in_process=False).actors == 1
    assert Where.given(actors=None, address=None, in_process=True).in_process
    joined = Where.given(actors=None, address="auto", in_process=True)
    assert joined.address == "auto" and not joined.in_process and joined.actors is None
    assert Where.given(actors=3, address=None, in_process=True).actors == 3  # --actors alone: a local cluster


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (Where(actors=-1), "--actors must be 0"),
        (Where(address="auto", actors=0), "--actors 0 runs in this process, but --address auto"),
        (Where(device="tpu"), "--device must be one of auto, cpu, cuda"),
        (Where(gpus_per_actor=1.5), "--gpus-per-actor"),
        (Where(cpus_per_actor=0), "--cpus-per-actor"),
    ],
)
def test_a_choice_that_can_never_run_is_refused(where, message):
    with pytest.raises(ValueError, match=message):
        where.check()


def test_cuda_actors_ask_for_gpus_and_cpu_actors_for_threads():
    plan = plan_on(GPU_NODE, Where(device="cuda", actors=2, gpus_per_actor=0.5), replica=True)
    assert (plan.workers, plan.cpus, plan.gpus, plan.placement) == (2, 1.0, 0.5, Placement("cuda", None))
    assert plan_on(GPU_NODE, Where(device="auto"), replica=True).gpus == 1.0  # auto: the cluster has GPUs
    plan = plan_on(GPU_NODE, Where(device="cpu", actors=2), replica=True)
    assert (plan.cpus, plan.gpus, plan.placement) == (4.0, 0.0, Placement("cpu", 4))


def test_cpu_actors_by_default_are_one_per_core_and_no_more_than_the_units():
    plan = plan_on(GPU_NODE, Where(actors=None, device="cpu"), replica=True)
    assert (plan.workers, plan.cpus, plan.placement) == (8, 1.0, Placement("cpu", 1))
    assert plan_on(GPU_NODE, Where(actors=None, device="cpu"), replica=True, units=3).workers == 3
    assert plan_on(GPU_NODE, Where(actors=None, device="cpu", cpus_per_actor=4), replica=True).workers == 2
    assert plan_on(GPU_NODE, Where(actors=5, device="cpu"), replica=True, units=3).workers == 5  # as asked
    assert plan_on(GPU_NODE, Where(actors=None), replica=True).workers == 1  # auto on GPUs: one actor


def test_tasks_need_no_device_and_run_as_many_at_once_as_cpus_hold():
    plan = plan_on(GPU_NODE, Where(actors=None, device="cuda"), replica=False)
    assert (plan.workers, plan.cpus, plan.gpus, plan.placement) == (8, 1.0, 0.0, Placement(None))
    assert plan_on(GPU_NODE, Where(actors=None, cpus_per_actor=3), replica=False).workers == 2
    assert plan_on(GPU_NODE, Where(actors=3), replica=False).workers == 3


def test_actors_that_never_fit_a_local_cluster_are_refused_in_one_line():
    here = ClusterInfo(started_here=True, nodes=1, resources={"CPU": 2.0})
    with pytest.raises(ClusterError, match="an actor needs 1 CPU and 1 GPU but this machine's local cluster has"):
        plan_on(here, Where(device="cuda"), replica=True)


def test_a_local_output_on_several_nodes_is_refused_but_a_url_or_an_input_is_not():
    local = Place("/data/run.zarr", {})
    with pytest.raises(ClusterError, match=r"/data/run\.zarr is a local path but the cluster has 2 nodes"):
        plan_on(TWO_NODES, Where(), replica=True, outputs=[local])
    with pytest.raises(ClusterError, match="is a local path"):
        plan_on(TWO_NODES, Where(), replica=False, outputs=[local])
    plan_on(TWO_NODES, Where(), replica=True, outputs=[Place("s3://b/run.zarr", S3)])
    plan_on(ClusterInfo(False, 1, {"CPU": 2.0}), Where(), replica=True, outputs=[local])  # one node: its disk


def test_s3_secrets_leave_the_options_for_the_environment():
    public, env = split_secrets("s3://b/run.zarr", S3)
    assert public == {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}}
    # A session token from elsewhere must not pair with the key given here: it is unset.
    assert env == {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_SESSION_TOKEN": None}
    public, env = split_secrets("s3://b/x", {"client_kwargs": {"aws_secret_access_key": "s", "region_name": "r"}})
    assert public == {"client_kwargs": {"region_name": "r"}} and env["AWS_SECRET_ACCESS_KEY"] == "s"
    assert split_secrets("s3://b/x", {"anon": True}) == ({"anon": True}, {})
    assert split_secrets("runs/x.zarr", S3) == ({}, {})  # a local path takes no options
    with pytest.raises(ValueError, match="--storage-option password= is a secret"):
        split_secrets("sftp://host/x", {"password": "p"})


def test_two_stores_with_other_credentials_cannot_share_a_worker():
    assert worker_env([Place("s3://a/x", S3), Place("s3://a/y", S3), Place("local", {})])["AWS_ACCESS_KEY_ID"] == "AKID"
    with pytest.raises(ValueError, match="other credentials"):
        worker_env([Place("s3://a/x", S3), Place("s3://a/y", {**S3, "key": "OTHER"})])


def test_an_environment_is_put_back_as_it_was(monkeypatch):
    monkeypatch.setenv("AWS_SESSION_TOKEN", "theirs")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    with environment({"AWS_ACCESS_KEY_ID": "AKID", "AWS_SESSION_TOKEN": None}):
        assert os.environ["AWS_ACCESS_KEY_ID"] == "AKID" and "AWS_SESSION_TOKEN" not in os.environ
    assert "AWS_ACCESS_KEY_ID" not in os.environ and os.environ["AWS_SESSION_TOKEN"] == "theirs"


def _seen(replica, payload, progress):
    return os.environ.get("AWS_SECRET_ACCESS_KEY")


def test_in_process_the_secrets_are_this_process_environment_for_the_run_only(monkeypatch):
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    choice = Where(actors=0, device="cpu")
    with open_executor(choice, replica=True, outputs=[Place("s3://b/run.zarr", S3)]) as (executor, placement):
        assert isinstance(executor, InProcessExecutor) and placement == Placement("cpu")
        seen = []
        executor.run([Unit(0, None)], _seen, on_result=lambda unit, got: seen.append(got))
    assert seen == ["s3cr3t"] and "AWS_SECRET_ACCESS_KEY" not in os.environ
    with open_executor(Where(actors=0), replica=True) as (_, placement):
        assert placement == Placement(None)  # auto in this process: the library's default device


def test_a_secret_no_environment_carries_is_refused_before_anything_runs():
    with (
        pytest.raises(ClusterError, match="password= is a secret"),
        open_executor(Where(actors=0), replica=True, outputs=[Place("sftp://h/x", {"password": "p"})]),
    ):
        pass
