"""Joining a head started on loopback (`ray start --head --node-ip-address 127.0.0.1`, listening on
loopback only, token authentication on; ended by its process id): `--address 127.0.0.1:PORT` and
`--address auto` (RAY_ADDRESS) join it with nothing else set, and a wrong token is one line."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from tests.support import HANG_S, free_port, ray_start, stop_nodes

pytestmark = pytest.mark.slow
pytest.importorskip("zarr")


@pytest.fixture(scope="module")
def loopback_head():
    """A one-CPU head on 127.0.0.1; yields its address and the environment of a driver that has its token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "VZ_RAY_"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    port = free_port()
    # The head alone is kept on 127.0.0.1 (Ray would move it to the machine's address); drivers are not told.
    head_env = {**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    head = ray_start(["--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "1"], head_env)
    try:
        yield f"127.0.0.1:{port}", env
    finally:
        stop_nodes([head])


def _score(address: str, env: dict, model: str, data: str, out) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "jobs.score", "--address", address, "--out", str(out), "--model", model]
    cmd += ["--dataset", data, "--methods", "attention", "--limit", "5", "--part-size", "3", "--no-progress"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=HANG_S)


def test_a_loopback_head_is_joined_by_its_address_and_by_auto(loopback_head, tiny_model_dir, texts_jsonl, tmp_path):
    address, env = loopback_head
    by_address = _score(address, env, tiny_model_dir, texts_jsonl, tmp_path / "a.zarr")
    assert by_address.returncode == 0, by_address.stderr[-3000:]
    by_auto = _score("auto", {**env, "RAY_ADDRESS": address}, tiny_model_dir, texts_jsonl, tmp_path / "b.zarr")
    assert by_auto.returncode == 0, by_auto.stderr[-3000:]
    for run in (by_address, by_auto):
        assert "4 scored, 1 skipped" in run.stdout  # the third text is empty
    assert "is set but not used" not in by_auto.stderr


def test_a_wrong_token_is_one_line(loopback_head, tiny_model_dir, texts_jsonl, tmp_path):
    address, env = loopback_head
    done = _score(
        address, {**env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}, tiny_model_dir, texts_jsonl, tmp_path / "w"
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "gcs_client" not in done.stderr  # Ray's retries went to a log file
    last = done.stderr.strip().splitlines()[-1]
    assert f"error: --address {address}: the Ray cluster refused this driver (token authentication" in last
    assert not (tmp_path / "w").exists()
