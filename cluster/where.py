"""Where a job's units run, chosen and placed in one place for every job (score, aggregate, evaluate).

    choice = Where(address="auto", actors=4, device="cuda")
    with open_executor(choice, replica=True, outputs=[store]) as (executor, placement):
        executor.run(units, step, replica=functools.partial(load, device=placement.device))

A choice runs in this process (`actors=0`), on a local Ray cluster started on loopback (no
address, or `local`), or on a joined cluster (`HOST:PORT`, `auto`: `cluster.connect`, whose join
rules, timeouts and SIGTERM handling apply). A step with a replica runs on actors, one replica
each, placed by `cluster.placement` (device, GPUs and CPUs per actor); one without runs as Ray
tasks. The places workers write must be URLs on a cluster of several nodes, and the secrets of
every place they reach go to the workers' environment (`cluster.credentials`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from cluster.connect import ClusterError, ClusterInfo
from cluster.credentials import Reached, worker_env
from cluster.executor import Executor, InProcessExecutor
from cluster.placement import PlacementError, check_request, default_actors, place_actors

__all__ = ["Placement", "RayPlan", "Where", "open_executor", "plan_on"]


@dataclass(frozen=True)
class Where:
    """Where a run's units go, as the command line asked (`--address`, `--actors`, `--device`, ...)."""

    address: str | None = None  # a cluster to join: HOST:PORT or auto; None or "local": start one on loopback
    # 0: in this process, no Ray; N: N actors (or N tasks at once); None: with a replica, one actor per
    # core on CPUs (one per `cpus_per_actor`) and one on GPUs, else as many tasks as the CPUs hold
    actors: int | None = 1
    device: str = "auto"  # auto: GPUs if the cluster has some now; cpu; cuda (even before GPU nodes are up)
    gpus_per_actor: float = 1.0  # on GPUs (fractions allowed: 0.5 puts two actors on a GPU)
    cpus_per_actor: int | None = (
        None  # default: 1 (then `actors` None: one actor per core), or the CPUs divided among `actors`
    )
    max_attempts: int = 3  # tries of a unit, its worker's death included
    replica_bytes: int | None = None  # one replica's memory (weights and work): caps the default actors on CPUs
    # A worker writes a unit behind the next one's computing (False: in turn). None: on GPUs only: on
    # CPUs the writer shares the scoring cores (measured 0.76-1.0x the speed of writing in turn).
    background_writes: bool | None = None

    @classmethod
    def given(cls, *, actors: int | None, address: str | None, in_process: bool, **rest) -> Where:
        """The choice of a command whose `--actors` may be left out: then, with an address, on that cluster
        (1 actor, or as many tasks at once as its CPUs hold); without one, in this process if `in_process`
        (aggregate, evaluate), else 1 actor on a local cluster."""
        if actors is None and not address:
            actors = 0 if in_process else 1
        return cls(address=address, actors=actors, **rest)

    @property
    def in_process(self) -> bool:
        return self.actors == 0

    def check(self) -> None:
        """Raise `ValueError` for a choice that can never run (before anything loads or connects)."""
        if self.actors is not None and self.actors < 0:
            raise ValueError(f"--actors must be 0 (in this process) or more, not {self.actors}")
        if self.actors == 0 and self.address:
            raise ValueError(f"--actors 0 runs in this process, but --address {self.address} names a cluster: drop one")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        check_request(self.device, self.gpus_per_actor, self.cpus_per_actor)


@dataclass(frozen=True)
class Placement:
    """Where a worker builds its replica: the torch device and threads (None: the library's default)."""

    device: str | None
    num_threads: int | None = None


@dataclass(frozen=True)
class RayPlan:
    """What a run asks of a Ray cluster: `workers` actors (or tasks at once) of `cpus`/`gpus` each."""

    workers: int
    cpus: float
    gpus: float
    placement: Placement


def plan_on(
    cluster: ClusterInfo, choice: Where, *, replica: bool, outputs: Sequence[Reached] = (), units: int | None = None
) -> RayPlan:
    """Plan `choice` on `cluster` (no Ray call); raise `ClusterError` where it can never run.

    `units`, when known, caps the actors a run starts by default: no replica is loaded for nothing.
    A local output path is refused on a cluster of several nodes: each worker would write to its
    own node's disk. Tasks (no replica) need no device: each asks `cpus_per_actor` CPUs (1 by default).
    """
    if cluster.nodes > 1:
        for place in outputs:
            if not place.is_url:
                raise ClusterError(
                    f"{place.path} is a local path but the cluster has {cluster.nodes} nodes: workers on the other"
                    " nodes would write to their own disks; write to shared object storage (s3://...) instead,"
                    " or run on one node"
                )
    if not replica:
        cpus = float(choice.cpus_per_actor or 1)
        workers = choice.actors or max(1, int(cluster.resources.get("CPU", 1) // cpus))
        return RayPlan(workers, cpus, 0.0, Placement(None))
    try:
        shape = place_actors(
            cluster,
            device=choice.device,
            actors=choice.actors,
            gpus_per_actor=choice.gpus_per_actor,
            cpus_per_actor=choice.cpus_per_actor,
        )
    except PlacementError as err:
        raise ClusterError(str(err)) from None
    actors = choice.actors or default_actors(cluster.resources, shape, choice.replica_bytes)
    if choice.actors is None and units is not None:
        actors = max(1, min(actors, units))
    return RayPlan(actors, shape.cpus, shape.gpus, Placement(shape.device, shape.threads))


@contextmanager
def open_executor(
    choice: Where,
    *,
    replica: bool,
    outputs: Sequence[Reached] = (),
    inputs: Sequence[Reached] = (),
    units: int | None = None,
) -> Iterator[tuple[Executor, Placement]]:
    """Yield the executor `choice` names, connected and placed, and where its replicas go.

    `replica`: the step keeps a replica (actors) or not (tasks). `outputs` are the places workers
    write (refused when local on a cluster of several nodes), `inputs` those they only read (a
    shared disk serves every node); the secrets of both reach the workers through their
    environment; `units` (how many the run has, when known) caps the default number of actors.
    Raises `ClusterError` (one line, exit 2) for what cannot run as asked.
    """
    try:
        env = worker_env([*outputs, *inputs])
    except ValueError as err:
        raise ClusterError(str(err)) from None
    if choice.in_process:
        device = None if choice.device == "auto" else choice.device
        background = choice.background_writes
        if background is None and not replica:
            background = False  # a step without a replica (aggregation) writes nothing behind: no torch to load
        elif background is None:
            import torch  # the step loads it anyway

            background = device == "cuda" or (device is None and torch.cuda.is_available())
        here = InProcessExecutor(max_attempts=choice.max_attempts, env=env, background_writes=background)
        yield here, Placement(device)
        return
    from cluster.connect import connect
    from cluster.ray_executor import RayExecutor

    with connect(None if choice.address == "local" else choice.address) as cluster:
        plan = plan_on(cluster, choice, replica=replica, outputs=outputs, units=units)
        executor = RayExecutor(
            workers=plan.workers,
            cpus=plan.cpus,
            gpus=plan.gpus,
            max_attempts=choice.max_attempts,
            max_in_flight=plan.workers,
            env=env,
            background_writes=plan.gpus > 0 if choice.background_writes is None else choice.background_writes,
        )
        yield executor, plan.placement
