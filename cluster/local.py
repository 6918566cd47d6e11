"""Join a Ray cluster, or start a local one on loopback and stop it at the end (the embedded default)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["cluster_resources", "connect", "node_count"]


@contextmanager
def connect(address: str | None, *, num_cpus: int | None = None) -> Iterator[bool]:
    """Use the Ray already initialised in this process, join `address` (or `$RAY_ADDRESS`), or start a local one.

    Yields True when the cluster was started here (its resources are then fixed: nothing joins it).
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    if ray.is_initialized():
        yield False
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
        yield not address
    finally:
        ray.shutdown()


def node_count() -> int:
    """Return the number of alive nodes of the connected cluster."""
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive"))


def cluster_resources() -> dict[str, float]:
    """Return the connected cluster's total resources (`CPU`, `GPU`, ...)."""
    import ray

    return dict(ray.cluster_resources())
