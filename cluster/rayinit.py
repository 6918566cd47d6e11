"""How this process calls `ray.init`, whether it joins a cluster or starts one: its node kept on
loopback where Ray would move it, Ray's own output kept in a log file while it connects, and any
failure said in one line (`ClusterError`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cluster.userdir import UnsafeFolderError, private_dir

__all__ = ["ClusterError", "log_note", "loopback_node", "ray_output"]


class ClusterError(RuntimeError):
    """The cluster could not be joined or started, or a run cannot go where it was asked to: one line
    saying what was tried and what to do."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # 2: the address, token or setting given; 1: this machine (a start timed out)


@contextmanager
def loopback_node() -> Iterator[None]:
    """Keep this process's node address on 127.0.0.1 while `ray.init` runs.

    Ray rewrites a loopback address to the machine's routable one (`resolve_ip_for_localhost`)
    unless its multi-node mode is off (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, read when Ray is
    imported); with a local node on 127.0.0.1 every server it starts binds loopback only (measured:
    GCS, raylet, workers, agents), and a head on 127.0.0.1 is joined where it listens. A driver that
    imported Ray before has read the variable, so the setting it controls is switched for the call only.
    """
    import ray._private.ray_constants as constants

    before = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = before


@contextmanager
def ray_output(what: str) -> Iterator[Path | None]:
    """Send what is written to stderr (Ray's C++ retries print a line a second) to a log file while
    Ray joins or starts; yield the file's path, kept only if the block fails (None where the user's
    private folder is unusable: then Ray writes to stderr as usual)."""
    try:
        path = private_dir("logs") / f"ray-{what}-{os.getpid()}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except (OSError, UnsafeFolderError):
        yield None
        return
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(fd, 2)
    os.close(fd)
    ok = False
    try:
        yield path
        ok = True
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if ok:
            path.unlink(missing_ok=True)


def log_note(log: Path | None) -> str:
    """The end of a failure's line: where Ray's messages of the attempt are."""
    return f"; Ray's messages are in {log}" if log else ""
