"""Connect a driver to Ray: join a cluster, or start a local one on loopback and stop it at the end
(the embedded default). `vz score`, `vz aggregate --address` and `vz evaluate --address` all come here.

One rule: without an address a run starts its own local cluster, whatever `RAY_ADDRESS` says (it
warns when that is set); it joins a cluster only when given one, `HOST:PORT` (the head's GCS port)
or `auto` (`RAY_ADDRESS`, which `ray job submit` sets for its drivers, else the cluster that
`ray start` last started on this machine). A join waits at most `VZ_RAY_JOIN_TIMEOUT` seconds for
the head to answer (`cluster.join`); a local start may take `VZ_RAY_START_TIMEOUT` seconds, over
several of Ray's fixed 30-second tries. Failures are `ClusterError`s of one line. While connected,
SIGTERM stops the driver the way Ctrl-C does (`Terminated`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cluster.join import GcsAddress, join
from cluster.leftovers import children, end_leftovers, end_started, record_started
from cluster.rayinit import ClusterError, log_note, loopback_node, ray_output

__all__ = [
    "LOOPBACK",
    "ClusterError",
    "ClusterInfo",
    "Settings",
    "Terminated",
    "connect",
    "interrupt_on_sigterm",
    "interrupting_signal",
]

LOOPBACK = "127.0.0.1"
RAY_NODE_START_S = 30  # how long Ray waits for a node it starts, fixed in Ray: a longer start is another try


class Terminated(KeyboardInterrupt):
    """SIGTERM reached the driver (a batch scheduler stopping it): handled like Ctrl-C."""

    signum = signal.SIGTERM


@dataclass(frozen=True)
class ClusterInfo:
    """The cluster a driver is connected to, as it was when the driver connected."""

    started_here: bool  # a local cluster this process started: its resources are fixed, nothing joins it
    nodes: int  # alive nodes
    resources: dict[str, float]  # total resources (`CPU`, `GPU`, ...)


@dataclass(frozen=True)
class Settings:
    """What the environment says about clusters; read once, here."""

    ray_address: str | None  # RAY_ADDRESS: joined only with `--address auto`
    join_timeout_s: float  # VZ_RAY_JOIN_TIMEOUT: how long a join waits for the head to answer
    start_timeout_s: float  # VZ_RAY_START_TIMEOUT: how long a local cluster may take to start, tries included
    tls: bool  # RAY_USE_TLS: Ray's servers speak TLS

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            ray_address=env.get("RAY_ADDRESS") or None,
            join_timeout_s=_seconds(env, "VZ_RAY_JOIN_TIMEOUT", 60.0),
            start_timeout_s=_seconds(env, "VZ_RAY_START_TIMEOUT", 120.0),
            tls=env.get("RAY_USE_TLS", "0").lower() in ("1", "true"),
        )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise ClusterError(f"{name} must be a number of seconds, not {text!r}")
    return value


@contextmanager
def connect(address: str | None, *, num_cpus: int | None = None) -> Iterator[ClusterInfo]:
    """Use the Ray already initialised in this process, join `address` (`HOST:PORT` or `auto`), or start a local one.

    A local cluster listens on loopback only and keeps Ray's token authentication (on by default
    for local clusters in current Ray): nothing on another host can reach it. Joining a cluster
    leaves its security to it.
    """
    import ray

    if ray.is_initialized():
        yield _info(False)
        return
    settings = Settings.from_env()
    before = signal.getsignal(signal.SIGTERM)
    record: Path | None = None
    try:
        if address:
            join(GcsAddress.parse(address, settings.ray_address), settings.join_timeout_s, tls=settings.tls)
        else:
            if settings.ray_address:
                warnings.warn(
                    f"RAY_ADDRESS={settings.ray_address} is set but not used: without --address a run starts its"
                    " own local cluster; pass --address auto to join that cluster",
                    stacklevel=3,
                )
            record = _start_local(num_cpus, settings.start_timeout_s)
        # ray.init set Ray's SIGTERM handler: it tears the node down under the running driver, which then aborts.
        _restore_sigterm(before)
        with interrupt_on_sigterm():
            yield _info(not address)
    finally:
        ray.shutdown()
        if record is not None:
            record.unlink(missing_ok=True)
        _restore_sigterm(before)


def _info(started_here: bool) -> ClusterInfo:
    import ray

    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return ClusterInfo(started_here=started_here, nodes=nodes, resources=dict(ray.cluster_resources()))


def _start_local(num_cpus: int | None, timeout_s: float) -> Path | None:
    """Start a local cluster on loopback, trying again while Ray's node times out and `timeout_s` allows;
    return the record of the processes it started (`cluster.leftovers`)."""
    import ray

    end_leftovers()
    t0 = time.monotonic()
    tries = 0
    while True:
        tries += 1
        before = children()
        with ray_output("start") as log:
            try:
                with loopback_node():
                    ray.init(
                        address="local",
                        _node_ip_address=LOOPBACK,
                        include_dashboard=False,
                        num_cpus=num_cpus or len(os.sched_getaffinity(0)),  # the CPUs this process may use
                        log_to_driver=False,
                    )
                break
            except OSError as err:
                end_started(before)
                raise ClusterError(_start_failure(err) + log_note(log), exit_code=1) from err
            except Exception as err:
                end_started(before)  # what the failed try started: the next try starts anew
                if "timed out during startup" not in str(err):
                    raise
                spent = time.monotonic() - t0
                if spent + RAY_NODE_START_S > timeout_s:
                    counted = f"{tries} {'try' if tries == 1 else 'tries'}"
                    raise ClusterError(
                        f"the local Ray cluster did not start in {spent:.0f} s ({counted}; Ray gives a starting"
                        f" node {RAY_NODE_START_S} s): this machine is too busy; rerun when it is less loaded, or"
                        f" allow more time with VZ_RAY_START_TIMEOUT=SECONDS (now {timeout_s:g})" + log_note(log),
                        exit_code=1,
                    ) from err
        warnings.warn(
            f"the local Ray node did not start in Ray's {RAY_NODE_START_S} s (this machine is busy): trying again"
            f" ({spent:.0f} of VZ_RAY_START_TIMEOUT={timeout_s:g} s spent)",
            stacklevel=3,
        )
    record = record_started(before)
    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOOPBACK:  # never run a cluster that other hosts could reach
        ray.shutdown()
        raise RuntimeError(f"the local Ray cluster came up on {node_ip}, not on loopback; it was stopped")
    return record


def _start_failure(err: OSError) -> str:
    home = str(Path.home())
    if err.filename and str(err.filename).startswith(home):
        return (
            f"cannot start a local Ray cluster: Ray keeps its authentication token in {home}/.ray, which cannot be"
            f" written ({err.strerror}: {err.filename}): make HOME a writable folder, or set RAY_AUTH_TOKEN to a"
            " token of your own (`python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )
    return f"cannot start a local Ray cluster: {type(err).__name__}: {err}"


# The signal `interrupt_on_sigterm` last turned into a `Terminated`: Ray's waits turn a KeyboardInterrupt
# raised in them into a plain one of their own, which no longer says it came from SIGTERM.
_RAISED: list[int | None] = [None]


def interrupting_signal(err: BaseException) -> int:
    """The signal behind a KeyboardInterrupt: SIGTERM when `interrupt_on_sigterm` raised it (even if Ray
    re-raised it as a plain KeyboardInterrupt), else SIGINT (Ctrl-C)."""
    return getattr(err, "signum", None) or _RAISED[0] or signal.SIGINT


@contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Raise `Terminated` (a KeyboardInterrupt) in the main thread on SIGTERM, as Ctrl-C raises
    KeyboardInterrupt: the driver stops its workers and says how to resume. Once only: a second
    SIGTERM while it stops changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    armed = [True]
    _RAISED[0] = None

    def handler(signum, frame):
        if armed[0]:
            armed[0] = False
            _RAISED[0] = signal.SIGTERM
            raise Terminated()

    before = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except KeyboardInterrupt:
        raise  # `interrupting_signal` reads `_RAISED` while this propagates
    else:
        _RAISED[0] = None  # left without an interrupt: a later Ctrl-C elsewhere is not taken for SIGTERM
    finally:
        armed[0] = False
        _restore_sigterm(before)


def _restore_sigterm(handler) -> None:
    if threading.current_thread() is threading.main_thread() and handler is not None:
        signal.signal(signal.SIGTERM, handler)
