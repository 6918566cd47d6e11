"""Join a Ray cluster, or start a local one on loopback and stop it at the end (the embedded default).

A local cluster's processes are the driver's children; most end with it even when it is killed
(SIGKILL), but Ray's per-node agents outlive it. So the driver records the processes it started
(process id and start time) in a file, and the next driver that starts a local cluster ends those
of a driver that is gone: by process id, never by name.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LOOPBACK", "ClusterInfo", "connect", "end_leftovers"]

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ClusterInfo:
    """The cluster a driver is connected to, as it was when the driver connected."""

    started_here: bool  # a local cluster this process started: its resources are fixed, nothing joins it
    nodes: int  # alive nodes
    resources: dict[str, float]  # total resources (`CPU`, `GPU`, ...)


@contextmanager
def connect(address: str | None, *, num_cpus: int | None = None) -> Iterator[ClusterInfo]:
    """Use the Ray already initialised in this process, join `address` (or `$RAY_ADDRESS`), or start a local one.

    A local cluster listens on loopback only and keeps Ray's token authentication (on by default
    for local clusters in current Ray): nothing on another host can reach it. Joining a cluster
    leaves its security to it.
    """
    import ray

    if ray.is_initialized():
        yield _info(False)
        return
    address = address or os.environ.get("RAY_ADDRESS")  # set for drivers that `ray job submit` started
    record: Path | None = None
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        end_leftovers()
        with _loopback_node():
            ray.init(
                address="local",
                _node_ip_address=LOOPBACK,
                include_dashboard=False,
                num_cpus=num_cpus or os.cpu_count(),
                log_to_driver=False,
            )
        record = _record_started()
        node_ip = ray.util.get_node_ip_address()
        if node_ip != LOOPBACK:  # never run a cluster that other hosts could reach
            ray.shutdown()
            raise RuntimeError(f"the local Ray cluster came up on {node_ip}, not on loopback; it was stopped")
    try:
        yield _info(not address)
    finally:
        ray.shutdown()
        if not address and record is not None:
            record.unlink(missing_ok=True)


def _info(started_here: bool) -> ClusterInfo:
    import ray

    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return ClusterInfo(started_here=started_here, nodes=nodes, resources=dict(ray.cluster_resources()))


def _records_dir() -> Path:
    return Path(tempfile.gettempdir()) / "vz-local-clusters"


def _record_started() -> Path | None:
    """Write down the processes this driver's `ray.init` started; return the record's path."""
    try:
        import psutil
    except ImportError:
        return None
    me = psutil.Process()
    procs = [[c.pid, c.create_time()] for c in me.children(recursive=True)]
    folder = _records_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{me.pid}.json"
    path.write_text(json.dumps({"driver": [me.pid, me.create_time()], "processes": procs}))
    return path


def end_leftovers() -> list[int]:
    """End the processes of local clusters whose driver is gone; return their process ids."""
    try:
        import psutil
    except ImportError:
        return []
    ended = []
    for path in sorted(_records_dir().glob("*.json")) if _records_dir().is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _same_process(psutil, *record["driver"]):
            continue  # that driver still runs: its cluster is its own
        for pid, started in record["processes"]:
            if _same_process(psutil, pid, started):  # the same process, not a reused id
                try:
                    psutil.Process(pid).kill()
                    ended.append(pid)
                except psutil.Error:
                    pass
        path.unlink(missing_ok=True)
    return ended


def _same_process(psutil, pid: int, started: float) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - started) < 1e-3
    except psutil.Error:
        return False


@contextmanager
def _loopback_node() -> Iterator[None]:
    """Keep a local node on 127.0.0.1 while `ray.init` starts it.

    Ray rewrites a loopback node address to the machine's routable one (`resolve_ip_for_localhost`)
    unless its multi-node mode is off (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, read when Ray is
    imported); with the node on 127.0.0.1 every server it starts binds loopback only (measured:
    GCS, raylet, workers, agents). A driver that imported Ray before has read the variable, so the
    setting it controls is switched for the start only.
    """
    import ray._private.ray_constants as constants

    before = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = before
