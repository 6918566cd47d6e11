"""Plain helpers the tests share (fixtures live in conftest.py): sample inputs, a small job config."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch

VOCAB = 120  # the tiny models' vocabulary
# The tiny models' shape (BERT and LLaMA configs; LLaMA adds `num_key_value_heads=2`): built seeded.
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)

TEXTS = [
    "The cat sat on the mat.",
    "Hello there!",
    "",  # empty: recorded as skipped, never retried
    "A somewhat longer sentence about value zeroing and context mixing in transformers.",
    "Short one.",
    "What is your name?",
    "I like to read books about science and history.",
    "Yes.",
    "Ray actors shard the corpus into parts.",
    "Zarr stores every layer's maps.",
    "Good morning, how are you today?",
    "The end.",
]


def sample_ids(seed: int, n: int) -> list[int]:
    """Return `n` seeded token ids of the tiny models' vocabulary (above the special ids)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (n,), generator=g).tolist()


def job_config(tmp_path, model: str, data: str, **kw):
    """A small scoring job over `data` with `model`, in this process unless `actors` says otherwise."""
    from jobs.score.config import JobConfig

    base = dict(
        out=str(tmp_path / "run.zarr"),
        dataset=data,
        model=model,
        methods=("value_zeroing", "attention"),
        limit=8,
        part_size=3,
        batch_size=2,
        actors=0,
        progress=False,
        store_dtype="float32",
    )
    return JobConfig(**{**base, **kw})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A hang guard, not a time limit: on a loaded machine (2 cores shared with other work) a Ray test may
# take minutes, and only a real hang should fail it. Tests wait on events (a file appears, a process
# ends); every such wait is bounded by this one generous number, never by a guess of how long it takes.
HANG_S = int(os.environ.get("VZ_TEST_HANG_S", "1800"))


def wait_until(condition: Callable[[], object], what: str, proc=None, poll: float = 0.25):
    """Return `condition()` once it is true; fail at once if `proc` ends first (the event cannot come)."""
    end = time.monotonic() + HANG_S
    while time.monotonic() < end:
        got = condition()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}")
        time.sleep(poll)
    raise TimeoutError(f"hung: no {what} after {HANG_S} s")


def ray_start(args: list[str], env: dict) -> subprocess.Popen:
    """Start a Ray node with `ray start --block ARGS` (one process to end by its id; its own temp
    folder and free ports for its agents, so that it never meets another cluster on this machine)."""
    ray_bin = str(Path(sys.executable).with_name("ray"))
    temp = tempfile.mkdtemp(prefix="vzn", dir="/tmp")  # short: Ray's socket paths are length-limited
    ports = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port"]
    ports += ["--runtime-env-agent-port"]
    extra = [x for p in ports for x in (p, str(free_port()))]
    if "--head" in args:
        extra += ["--include-dashboard", "false"]
    cmd = [ray_bin, "start", "--block", "--temp-dir", temp, *extra, *args]
    log = open(Path(temp) / "start.log", "w")  # noqa: SIM115 (the process outlives this call)
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_nodes(nodes: list[subprocess.Popen]) -> None:
    """End nodes that `ray_start` started, by process id (`ray start --block` stops what it started)."""
    for proc in reversed(nodes):
        proc.terminate()
    for proc in nodes:
        try:
            proc.wait(timeout=HANG_S)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def hang_guard(seconds: int = HANG_S):
    """Fail the test instead of hanging forever (main thread only)."""

    def expire(signum, frame):
        raise TimeoutError(f"gave up after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def record_reads(monkeypatch) -> list[str]:
    """Record the key of every object zarr reads from a local store from now on (in order)."""
    from zarr.storage import LocalStore

    keys: list[str] = []
    real_get = LocalStore.get

    async def get(self, key, *args, **kwargs):
        keys.append(key)
        return await real_get(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "get", get)
    return keys
