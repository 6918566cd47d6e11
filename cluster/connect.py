"""Join a Ray cluster, or start a local one on loopback and stop it at the end (the embedded default)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["ClusterInfo", "connect"]


@dataclass(frozen=True)
class ClusterInfo:
    """The cluster a driver is connected to, as it was when the driver connected."""

    started_here: bool  # a local cluster this process started: its resources are fixed, nothing joins it
    nodes: int  # alive nodes
    resources: dict[str, float]  # total resources (`CPU`, `GPU`, ...)


@contextmanager
def connect(address: str | None, *, num_cpus: int | None = None) -> Iterator[ClusterInfo]:
    """Use the Ray already initialised in this process, join `address` (or `$RAY_ADDRESS`), or start a local one."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    if ray.is_initialized():
        yield _info(False)
        return
    address = address or os.environ.get("RAY_ADDRESS")  # set for drivers that `ray job submit` started
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(
            address="local",
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            num_cpus=num_cpus or os.cpu_count(),
            log_to_driver=False,
        )
    try:
        yield _info(not address)
    finally:
        ray.shutdown()


def _info(started_here: bool) -> ClusterInfo:
    import ray

    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return ClusterInfo(started_here=started_here, nodes=nodes, resources=dict(ray.cluster_resources()))
