"""Join a running Ray cluster: read the head's address, wait (bounded) until it answers, then `ray.init`.

Ray itself retries an address that never answers for many minutes without a word, so the head is
checked first: the check connects and opens an HTTP/2 session (the GCS is a gRPC server), waiting
for a head that is still starting up to a timeout, and refusing at once a port where something else
answers (the dashboard, 8265). Ray's TLS mode (`RAY_USE_TLS`) speaks TLS first: there only the
connection is checked.
"""

from __future__ import annotations

import socket
import time
from contextlib import nullcontext
from dataclasses import dataclass

from cluster.rayinit import ClusterError, log_note, loopback_node, ray_output

__all__ = ["GcsAddress", "join", "wait_for_gcs"]

# The client's connection preface and an empty SETTINGS frame; a gRPC server answers with SETTINGS (type 4).
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_SETTINGS = 4


@dataclass(frozen=True)
class GcsAddress:
    """A Ray head's GCS address and what the user wrote for it (for messages)."""

    host: str
    port: int
    given: str  # HOST:PORT, or auto and what it stood for

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def rewritten_by_ray(self) -> bool:
        """Ray replaces these with the machine's routable address, where a head on loopback does not listen."""
        return self.host in ("127.0.0.1", "localhost")

    @classmethod
    def parse(cls, address: str, ray_address: str | None) -> GcsAddress:
        """Read `--address`: `HOST:PORT`, or `auto` (`ray_address`, i.e. RAY_ADDRESS, else the cluster
        that `ray start` last started on this machine). Raise `ClusterError` naming what to pass instead."""
        given = address
        if address == "auto":
            address = ray_address or _started_on_this_machine() or ""
            if not address:
                raise ClusterError(
                    "--address auto: RAY_ADDRESS is not set and `ray start` has started no cluster on this machine;"
                    " pass the head's HOST:PORT, or leave --address out to start a local cluster"
                )
            given = f"auto (RAY_ADDRESS={address})" if ray_address else f"auto ({address}, from `ray start`)"
        if "://" in address:
            raise ClusterError(
                f"--address {given}: give the head's GCS address HOST:PORT (port 6379 unless `ray start --head"
                " --port` said otherwise), not a URL; a dashboard URL (http://HEAD:8265) is for `ray job submit`"
            )
        host, sep, port = address.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ClusterError(f"--address {given}: expected HOST:PORT (the head's GCS port, 6379 by default) or auto")
        return cls(host, int(port), given)


def _started_on_this_machine() -> str | None:
    """The GCS address that `ray start` recorded for the last cluster it started here, if any."""
    from ray._private.utils import read_ray_address

    return read_ray_address()


def join(gcs: GcsAddress, timeout_s: float, *, tls: bool = False) -> None:
    """Join the cluster whose GCS is at `gcs` (`tls`: Ray's TLS mode); raise `ClusterError` if it cannot be."""
    import ray

    wait_for_gcs(gcs, timeout_s, tls=tls)
    with loopback_node() if gcs.rewritten_by_ray else nullcontext(), ray_output("join") as log:
        try:
            ray.init(address=gcs.address, log_to_driver=False)
        except (ConnectionError, RuntimeError) as err:
            raise ClusterError(_join_failure(gcs, err) + log_note(log)) from err


def _join_failure(gcs: GcsAddress, err: BaseException) -> str:
    said = " ".join(str(e) for e in (err, err.__cause__, err.__context__) if e is not None)
    if "InvalidAuthToken" in said or "AuthenticationError" in said:
        return (
            f"--address {gcs.given}: the Ray cluster refused this driver (token authentication: no token sent, or"
            " not the cluster's): export RAY_AUTH_MODE=token, with the head's token in RAY_AUTH_TOKEN or"
            " ~/.ray/auth_token, then rerun"
        )
    if "No node info found" in said:
        return (
            f"--address {gcs.given}: the Ray cluster answers, but this machine runs none of its nodes: run the"
            " command on a node of that cluster (`ray job submit ... -- vz score --address auto ...`)"
        )
    lines = [line.strip() for line in str(err.__cause__ or err).splitlines() if line.strip()]
    return f"--address {gcs.given}: could not join the Ray cluster at {gcs.address}: {lines[-1] if lines else err!r}"


def wait_for_gcs(gcs: GcsAddress, timeout_s: float, *, tls: bool = False) -> None:
    """Return once a gRPC server answers at `gcs`; raise `ClusterError` when something else answers,
    or when nothing has after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if _answers(gcs, min(max(deadline - time.monotonic(), 0.5), 5.0), tls):
                return
            raise ClusterError(
                f"--address {gcs.given}: something answers at {gcs.address} but it is not a Ray head's GCS port"
                " (6379 unless `ray start --head --port` said otherwise; the dashboard's 8265 is for `ray job submit`)"
            )
        except socket.gaierror as err:
            raise ClusterError(f"--address {gcs.given}: unknown host {gcs.host!r} ({err.strerror})") from None
        except OSError as err:
            why = err.strerror or str(err) or type(err).__name__
        if time.monotonic() >= deadline:
            raise ClusterError(
                f"--address {gcs.given}: no Ray head answered at {gcs.address} in {timeout_s:g} s ({why}):"
                f" start it (`ray start --head --port {gcs.port}`), check the address, allow longer with"
                " VZ_RAY_JOIN_TIMEOUT=SECONDS, or leave --address out to start a local cluster"
            )
        time.sleep(min(1.0, max(deadline - time.monotonic(), 0.0)))


def _answers(gcs: GcsAddress, timeout_s: float, tls: bool) -> bool:
    """Whether an HTTP/2 server answers at `gcs` (OSError when nothing does)."""
    with socket.create_connection((gcs.host, gcs.port), timeout=timeout_s) as s:
        if tls:
            return True
        s.sendall(_PREFACE)
        head = b""
        while len(head) < 9 and (more := s.recv(9 - len(head))):
            head += more
    return len(head) == 9 and head[3] == _SETTINGS
