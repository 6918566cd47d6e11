"""Several nodes, one lost: a head and a second node on loopback (two `ray start --block`, ended by
process id), the store on a local S3 server; the second node's raylet is killed mid-run and the job
still writes every example exactly once. A local output path on a multi-node cluster is refused
before anything is written or any model loads."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest

from tests.support import HANG_S, free_port, ray_start, stop_nodes, wait_until
from vzcore.store.root import read_plan

pytestmark = pytest.mark.slow
zarr = pytest.importorskip("zarr")
psutil = pytest.importorskip("psutil")


@pytest.fixture
def two_nodes():
    """A head (1 CPU) and a second node (2 CPUs) on loopback addresses; yields (address, env, second node).

    Ray clients rewrite 127.0.0.1 to the machine's routable address, so a cluster of several nodes
    on one machine uses other loopback addresses (whose servers bind every interface: this is a
    test cluster, with token authentication on; the embedded cluster stays on 127.0.0.1).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    port = free_port()
    head = ray_start(["--head", "--node-ip-address", "127.0.0.3", "--port", str(port), "--num-cpus", "1"], env)
    address = f"127.0.0.3:{port}"
    nodes = [head]
    try:

        def gcs() -> bool:  # the second node joins once the head's GCS answers
            return any(c.name() == "gcs_server" for c in psutil.Process(head.pid).children(recursive=True))

        wait_until(gcs, "GCS server on the head", head, poll=0.5)
        second = ray_start(["--address", address, "--node-ip-address", "127.0.0.2", "--num-cpus", "2"], env)
        nodes.append(second)
        probe = f"import ray; ray.init(address={address!r}); import time\n"
        probe += "while sum(x['Alive'] for x in ray.nodes()) < 2:\n    time.sleep(0.5)\nprint(2)"
        seen = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=HANG_S)
        assert seen.stdout.strip().endswith("2"), seen.stderr[-2000:]
        yield address, env, second
    finally:
        stop_nodes(nodes)


def _driver(address, env, tiny_model_dir, data, out, extra=()):
    cmd = [sys.executable, "-m", "jobs.score", "--address", address, "--out", out, "--model", tiny_model_dir]
    cmd += ["--dataset", data, "--methods", "attention", "--limit", "0", "--part-size", "3", "--no-progress"]
    return cmd + list(extra), env


def test_a_lost_node_loses_nothing_and_doubles_nothing(two_nodes, s3_server, tiny_model_dir, tmp_path):
    address, env, second = two_nodes
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"text": f"Row {i} mixes context."}) + "\n" for i in range(240)))
    out = "s3://vzstore/runs/multinode.zarr"
    opts = ["--storage-option", "key=testing", "--storage-option", "secret=testing"]
    opts += ["--storage-option", f"endpoint_url={s3_server['client_kwargs']['endpoint_url']}"]
    cmd, env = _driver(
        address,
        env,
        tiny_model_dir,
        str(data),
        out,
        ["--actors", "3", "--device", "cpu", "--cpus-per-actor", "1", *opts],
    )
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server)

    def three_parts() -> bool:
        return len(fs.glob("vzstore/runs/multinode.zarr/parts/*/scores/attention/zarr.json", refresh=True)) >= 3

    wait_until(three_parts, "three parts written", driver, poll=0.2)  # fails if the job ended first
    raylets = [c for c in psutil.Process(second.pid).children(recursive=True) if c.name() == "raylet"]
    assert raylets, "the second node has no raylet"
    for r in raylets:
        r.kill()  # the node is lost: its raylet, and with it its workers
    stdout, stderr = driver.communicate(timeout=HANG_S)
    assert driver.returncode == 0, stdout[-2000:] + stderr[-3000:]
    assert "actor deaths" in stdout
    root = zarr.open_group(store=out, mode="r", storage_options=s3_server)
    ids = []
    for p in read_plan(root):
        g = root[f"parts/{p['part']:05d}"]
        assert "attention" in g.attrs["complete"]
        ids.extend(g["example_id"][:].tolist())
    assert ids == list(range(240))  # every example exactly once


def test_a_local_output_on_several_nodes_is_refused_before_anything_is_written(two_nodes, tiny_model_dir, tmp_path):
    address, env, _ = two_nodes
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"text": "one row"}) + "\n")
    out = tmp_path / "local.zarr"
    cmd, env = _driver(address, env, tiny_model_dir, str(data), str(out))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=HANG_S)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "is a local path but the cluster has 2 nodes" in done.stderr
    assert not out.exists()
