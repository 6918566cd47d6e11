"""The scoring job on Ray: a killed actor, an S3 store, `ray job submit`, and the cluster configs."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("zarr")

import zarr

from cluster.executor import Started
from jobs.score import run_job
from jobs.score.config import JobConfig
from tests.support import HANG_S, TEXTS, free_port, hang_guard, job_config, wait_until
from vzcore.store.completion import complete_methods
from vzcore.store.layout import part_path
from vzcore.store.root import read_plan

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"


def _assert_every_example_once(root, n: int, methods: list[str]) -> None:
    ids = []
    for p in read_plan(root):
        g = root[part_path(p["part"])]
        assert complete_methods(dict(g.attrs)) == sorted(methods)
        ids.extend(g["example_id"][:].tolist())
    assert ids == list(range(n))


def test_cluster_configs_parse():
    yaml = pytest.importorskip("yaml")
    up = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    assert up["head_node_type"] in up["available_node_types"]
    assert any(t["resources"].get("GPU") for t in up["available_node_types"].values())
    job = yaml.safe_load((CLUSTER / "rayjob.yaml").read_text())
    assert job["kind"] == "RayJob" and job["apiVersion"] == "ray.io/v1"
    assert "-m jobs.score" in job["spec"]["entrypoint"] and "s3://" in job["spec"]["entrypoint"]
    assert "--device cuda" in job["spec"]["entrypoint"]  # its GPU workers may scale from zero
    workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert workers[0]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    submit = (CLUSTER / "submit.sh").read_text()
    assert "ray job submit" in submit and "-m jobs.score" in submit and '--device "${DEVICE:-cuda}"' in submit
    # A driver joins the cluster it was submitted to only when told to (`auto`: RAY_ADDRESS, which Ray sets).
    assert "--address auto" in submit and "--address auto" in job["spec"]["entrypoint"]
    subprocess.run(["bash", "-n", str(CLUSTER / "submit.sh")], check=True)


@pytest.mark.slow
def test_killed_actor_is_replaced_and_its_part_redone(ray_cluster, tmp_path, tiny_model_dir, texts_jsonl):
    killed: list[int] = []

    def kill_on_part_1(ev):
        if isinstance(ev, Started) and ev.key == 1 and ev.attempt == 0:  # first attempt at part 1: really kill it
            os.kill(ev.worker, signal.SIGKILL)
            killed.append(ev.worker)

    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, methods=("attention",), limit=len(TEXTS), actors=2)
    with hang_guard():
        s = run_job(cfg, on_event=kill_on_part_1)
    assert killed and s.actor_deaths == 1 and s.exit_code == 0
    assert (s.scored, s.skipped) == (len(TEXTS) - 1, 1)
    root = zarr.open_group(cfg.out, mode="r")
    _assert_every_example_once(root, len(TEXTS), ["attention"])
    import pandas as pd

    assert pd.read_parquet(f"{cfg.out}/tables/examples")["example_id"].tolist() == list(range(len(TEXTS)))


def _score_part_holding_a_write(scorer, task, progress):
    """The job's step, but part 1's first write blocks (after writing the pid of its actor to a file
    beside the store) until the actor is killed: the actor dies between scoring a part and writing it."""
    import time

    import jobs.score.step as step

    deferred = step.score_part(scorer, task, progress)
    held = Path(scorer.spec.location.path).parent / "held-write"

    def finish():
        if task.part == 1 and not held.exists():
            tmp = held.with_suffix(".tmp")
            tmp.write_text(str(os.getpid()))
            tmp.rename(held)  # whole, so the test never reads a partial pid
            time.sleep(HANG_S)
        return deferred.finish()

    return step.Deferred(finish)


@pytest.mark.slow
def test_an_actor_killed_between_scoring_and_writing_has_its_parts_redone(
    ray_cluster, tmp_path, tiny_model_dir, texts_jsonl, monkeypatch
):
    """Background writes lose nothing: the actor holding part 1's write (and part 2, scored behind it)
    is killed; both parts are redone by a new actor, and every example is written exactly once."""
    import threading

    from ray import cloudpickle

    import jobs.score.driver as driver

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import the tests
    monkeypatch.setattr(driver, "score_part", _score_part_holding_a_write)
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, methods=("attention",), limit=len(TEXTS), actors=1)
    cfg = cfg.replace(background_writes=True)  # on GPUs by default; here on the CPU
    held, killed, stop = tmp_path / "held-write", [], threading.Event()

    def killer():
        while not stop.is_set() and not held.exists():
            time.sleep(0.05)
        if held.exists():
            pid = int(held.read_text())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    events: list = []
    try:
        with hang_guard():
            s = run_job(cfg, on_event=events.append)
    finally:
        stop.set()
        thread.join()
    assert killed and s.actor_deaths == 1 and s.exit_code == 0 and not s.lost_parts
    assert [e.attempt for e in events if isinstance(e, Started) and e.key == 1] == [0, 1]  # redone
    assert (s.scored, s.skipped) == (len(TEXTS) - 1, 1)
    _assert_every_example_once(zarr.open_group(cfg.out, mode="r"), len(TEXTS), ["attention"])


@pytest.mark.slow
def test_by_default_a_cpu_cluster_scores_on_one_single_threaded_actor_per_core(
    ray_cluster, tmp_path, tiny_model_dir, texts_jsonl
):
    from cluster.executor import Ready

    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, methods=("attention",), limit=len(TEXTS), actors=None)
    events: list = []
    with hang_guard():
        s = run_job(cfg.replace(device="cpu"), on_event=events.append)
    assert s.exit_code == 0 and (s.scored, s.skipped) == (len(TEXTS) - 1, 1)
    assert len({e.worker for e in events if isinstance(e, Ready)}) == 2  # the session's cluster has 2 CPUs
    _assert_every_example_once(zarr.open_group(cfg.out, mode="r"), len(TEXTS), ["attention"])


@pytest.mark.slow
def test_more_actors_than_fit_run_on_those_that_start(ray_cluster, tmp_path, tiny_model_dir, texts_jsonl):
    cfg = job_config(
        tmp_path,
        tiny_model_dir,
        texts_jsonl,
        methods=("attention",),
        limit=len(TEXTS),
        actors=3,
        device="cpu",  # GPUs, where the machine has some, would fit another number of actors
        cpus_per_actor=1,  # the session cluster has 2 CPUs: the third actor never starts
    )
    with hang_guard(), pytest.warns(UserWarning, match="holds 2 of the 3 actors"):
        s = run_job(cfg)
    assert s.exit_code == 0 and (s.scored, s.skipped) == (len(TEXTS) - 1, 1)
    _assert_every_example_once(zarr.open_group(cfg.out, mode="r"), len(TEXTS), ["attention"])


@pytest.mark.slow
def test_a_replica_that_cannot_load_is_a_clear_error(ray_cluster, tmp_path, tiny_model_dir, texts_jsonl):
    import shutil

    from jobs.score import ModelLoadError

    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")  # config and tokenizer still read fine
    cfg = job_config(tmp_path, str(broken), texts_jsonl, actors=1)
    with hang_guard(), pytest.raises(ModelLoadError, match="could not load the model"):
        run_job(cfg)


@pytest.mark.slow
def test_cuda_actors_on_a_local_cluster_without_gpus_are_refused(tmp_path, tiny_model_dir, texts_jsonl):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_JOB_ID", "RAY_RAYLET_PID")}
    env["CUDA_VISIBLE_DEVICES"] = ""  # a machine with GPUs looks like one without
    cmd = [sys.executable, "-m", "jobs.score", "--out", str(tmp_path / "g.zarr"), "--model", tiny_model_dir]
    cmd += ["--dataset", texts_jsonl, "--device", "cuda", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=HANG_S)
    assert done.returncode == 2, done.stderr
    assert "an actor needs 1 CPU and 1 GPU but this machine's local cluster has" in done.stderr


@pytest.mark.slow
def test_store_on_s3(ray_cluster, s3_server, tiny_model_dir, texts_jsonl, tmp_path):
    """Credentials given as storage options reach Ray actors (scoring) and tasks (aggregating)
    through their environment: no unit carries them (tests/jobs/test_executor_choice.py)."""
    from cluster.where import Where
    from jobs.aggregate import AggregateConfig, aggregate

    out = "s3://vzstore/runs/t.zarr"
    cfg = JobConfig(
        out=out,
        dataset=texts_jsonl,
        model=tiny_model_dir,
        methods=("attention",),
        limit=6,
        part_size=4,
        actors=1,
        progress=False,
        storage_options=s3_server,
    )
    with hang_guard():
        s = run_job(cfg)
        assert s.exit_code == 0 and s.examples == 6 and s.bytes_written > 0
        assert run_job(cfg).parts_run == 0  # resume on S3 sees the completed parts
    root = zarr.open_group(store=out, mode="r", storage_options=s3_server)
    _assert_every_example_once(root, 6, ["attention"])
    import json

    assert "secret" not in json.dumps(dict(root.attrs)) and "storage_options" not in root.attrs["config"]
    import fsspec

    fs, _ = fsspec.core.url_to_fs(out, **s3_server)
    assert fs.exists("vzstore/runs/t.zarr/tables/examples/00000.parquet")
    config = AggregateConfig(bucket_edges=(1, 8), max_offset=2, plots=False)
    with hang_guard():
        done = aggregate(
            out, tmp_path / "agg", where=Where(address="auto", actors=2), config=config, storage_options=s3_server
        )
    assert done["complete"] and sum(done["examples"].values()) == 6


@pytest.mark.slow
def test_ray_job_submit_on_a_loopback_head(tmp_path, tiny_model_dir, texts_jsonl):
    ray_bin = str(Path(sys.executable).with_name("ray"))
    port, dash = free_port(), free_port()
    temp = tempfile.mkdtemp(prefix="vzr", dir="/tmp")  # short: Ray's socket paths are length-limited
    # Not the session cluster's RAY_ADDRESS (ray.init exports it): the head and its job agent would join it.
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_JOB_ID", "RAY_RAYLET_PID")}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # keeps the head on 127.0.0.1: it listens on loopback only
    # Token authentication on, with a token of this test's own (the head, the submitter and the job share it).
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    head = subprocess.Popen(
        [
            ray_bin,
            "start",
            "--head",
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(port),
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(dash),
            "--num-cpus",
            "1",
            "--temp-dir",
            temp,
            "--include-dashboard",
            "true",
            # Free ports for the agents: the session cluster's agents already hold the default ones.
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--dashboard-agent-grpc-port",
            str(free_port()),
            "--metrics-export-port",
            str(free_port()),
            "--runtime-env-agent-port",
            str(free_port()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    address = f"http://127.0.0.1:{dash}"
    try:

        def answers() -> bool:
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=1)
            except urllib.error.HTTPError:  # it answers (401 without Ray's token: authentication is on)
                pass
            except OSError:
                return False
            return True

        wait_until(answers, "answer from the Ray head", head, poll=0.5)
        out = tmp_path / "sub.zarr"
        cmd = [
            ray_bin,
            "job",
            "submit",
            "--address",
            address,
            "--runtime-env-json",
            '{"env_vars": {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}}',
            "--",
            sys.executable,
            "-m",
            "jobs.score",
            "--out",
            str(out),
            "--model",
            tiny_model_dir,
            "--dataset",
            texts_jsonl,
            "--methods",
            "attention",
            "--limit",
            "5",
            "--part-size",
            "3",
            "--actors",
            "1",
            "--address",
            "auto",  # the cluster `ray job submit` names in RAY_ADDRESS
            "--no-progress",
        ]

        def submitted():  # the dashboard answers before its job agent is ready: until then, submit again
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_S, env=env)
            return None if "No available agent" in res.stdout + res.stderr else res

        res = wait_until(submitted, "job agent on the head", head, poll=2)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert "5 scored" in res.stdout or "4 scored" in res.stdout
        _assert_every_example_once(zarr.open_group(str(out), mode="r"), 5, ["attention"])
    finally:
        head.terminate()  # `ray start --block` drains and stops the processes it started
        try:
            head.wait(timeout=HANG_S)
        except subprocess.TimeoutExpired:
            head.kill()
