"""What each actor asks of the cluster (CPUs, GPUs, device) and how many such actors fit in it now."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from cluster.connect import ClusterInfo

__all__ = [
    "DEVICES",
    "ActorShape",
    "PlacementError",
    "actor_shape",
    "actors_that_fit",
    "check_request",
    "default_actors",
    "place_actors",
]

DEVICES = ("auto", "cpu", "cuda")


class PlacementError(ValueError):
    """The actors asked for can never run on this cluster."""


@dataclass(frozen=True)
class ActorShape:
    """One actor's Ray resources, the device its replica runs on, and its torch threads (CPU only)."""

    cpus: float
    gpus: float
    device: str  # "cpu" or "cuda"
    threads: int | None  # torch threads on a CPU actor; None on a GPU actor


def check_request(device: str, gpus_per_actor: float, cpus_per_actor: int | None) -> None:
    """Raise `ValueError` for an unknown device or a share of a GPU or CPUs that Ray cannot place."""
    if device not in DEVICES:
        raise ValueError(f"--device must be one of {', '.join(DEVICES)}, not {device!r}")
    whole_or_fraction = gpus_per_actor <= 1 or float(gpus_per_actor).is_integer()
    if not (gpus_per_actor >= 1e-4 and whole_or_fraction):  # Ray's resolution is 1e-4 of a GPU
        raise ValueError(
            f"--gpus-per-actor must be a fraction in (0, 1] or a whole number, not {gpus_per_actor} "
            "(--device cpu scores on CPU threads)"
        )
    if cpus_per_actor is not None and cpus_per_actor < 1:
        raise ValueError(f"--cpus-per-actor must be at least 1, not {cpus_per_actor}")


def actor_shape(
    resources: dict[str, float], *, device: str, actors: int | None, gpus_per_actor: float, cpus_per_actor: int | None
) -> ActorShape:
    """Choose an actor's resources. `device="auto"` means GPUs if the cluster has any now.

    On CPUs an actor gets `cpus_per_actor` CPUs as torch threads; when that is not given, the
    cluster's CPUs divided among `actors`, or, with `actors` None (the default), one: one
    single-threaded replica per core (`default_actors`): a replica's threads wait for each other
    whenever another process holds a core (`bench/threads.py`: on a loaded 2-core machine one
    thread scored 28x faster than two; on a quiet machine the two were as fast).
    Name `cuda` on an autoscaling cluster whose GPU nodes are not up yet: `auto` would see no GPU
    and score on CPU threads. Raises `ValueError` as `check_request` does.
    """
    check_request(device, gpus_per_actor, cpus_per_actor)
    if device == "auto":
        device = "cuda" if resources.get("GPU", 0) > 0 else "cpu"
    if device == "cuda":
        return ActorShape(cpus=float(cpus_per_actor or 1), gpus=float(gpus_per_actor), device="cuda", threads=None)
    if cpus_per_actor is None:
        cpus_per_actor = 1 if actors is None else max(1, int(resources.get("CPU", 1)) // max(actors, 1))
    return ActorShape(cpus=float(cpus_per_actor), gpus=0.0, device="cpu", threads=cpus_per_actor)


def default_actors(resources: dict[str, float], shape: ActorShape, replica_bytes: int | None = None) -> int:
    """How many actors a run starts when none are asked for: as many as the cluster's CPUs hold on
    CPUs (one per core, single-threaded, unless `--cpus-per-actor` says otherwise), one on GPUs.

    Each actor holds its own copy of the model: with `replica_bytes` (a replica's weights and working
    memory), no more than the cluster's memory for actors (Ray's `memory` resource) holds."""
    if shape.device == "cuda":
        return 1
    actors = min(actors_that_fit(resources, shape), 1 << 10)
    if replica_bytes and resources.get("memory"):
        actors = min(actors, int(resources["memory"] // replica_bytes))
    return max(1, actors)


def actors_that_fit(resources: dict[str, float], shape: ActorShape) -> int:
    """Return how many actors of `shape` the cluster's current total resources hold (ignoring other work)."""

    def fit(have: float, need: float) -> float:
        return math.floor(have / need + 1e-9) if need > 0 else math.inf  # 1e-9: three actors of 1/3 GPU fit

    n = min(fit(resources.get("CPU", 0), shape.cpus), fit(resources.get("GPU", 0), shape.gpus))
    return int(n) if n != math.inf else 1 << 30


def place_actors(
    cluster: ClusterInfo, *, device: str, actors: int | None, gpus_per_actor: float, cpus_per_actor: int | None
) -> ActorShape:
    """Return the shape of `actors` actors on `cluster` (None: `default_actors`); warn when fewer fit
    now than are asked for.

    Raises `PlacementError` when none fits a local cluster started here (nothing will join it);
    a joined cluster may still scale up, so there the actors wait.
    """
    shape = actor_shape(
        cluster.resources, device=device, actors=actors, gpus_per_actor=gpus_per_actor, cpus_per_actor=cpus_per_actor
    )
    fit = actors_that_fit(cluster.resources, shape)
    need = f"{shape.cpus:g} CPU" + (f" and {shape.gpus:g} GPU" if shape.gpus else "")
    have = f"{cluster.resources.get('CPU', 0):g} CPU and {cluster.resources.get('GPU', 0):g} GPU"
    if fit == 0 and cluster.started_here:
        raise PlacementError(f"an actor needs {need} but this machine's local cluster has {have}")
    if actors is not None and fit < actors:
        warnings.warn(
            f"the cluster ({have} now) holds {fit} of the {actors} actors this run starts "
            f"({need} each); the others start if resources appear",
            stacklevel=2,
        )
    return shape
