"""A plain pool of Ray actors, one model replica each, that score and write parts.

Why not Ray Data: measured here (docs environment.md) each Ray Data pipeline paid 19-30 s of fixed
overhead on 2 cores, retried deterministic failures forever by default, and deadlocked on resume;
a part is already the unit of work, write and resume, so a pool of actors fed part descriptors is
all the scheduling the job needs. Ray's plain actors are not restarted (`max_restarts=0`); here a
dead actor is replaced and its part redone from scratch (the part writer overwrites a half part,
and only the new actor writes it: one writer per part, always).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import ray
from ray.util.queue import Queue

from jobs.worker import PartReport, PartTask, ReplicaLoadError, WorkerSpec, load_worker_model, run_part

__all__ = ["PoolResult", "ScorerActor", "run_pool"]

POLL_SECONDS = 0.5  # how often the driver forwards progress events while parts run
WAIT_NOTICE_SECONDS = 30.0  # with no actor ready by then, say that the job waits for resources

# An event is a tuple: ("start", part, attempt, pid) | ("progress", part, examples, tokens)
# | ("waiting", actors not started, cpus per actor, gpus per actor)
Event = tuple


@ray.remote(max_restarts=0)
class ScorerActor:
    """Hold one model replica; score and write the parts it is given."""

    def __init__(self, spec: WorkerSpec, events: Queue | None):
        self.spec = spec
        self.events = events
        self.handle = load_worker_model(spec)

    def pid(self) -> int:
        return os.getpid()

    def score_part(self, task: PartTask) -> PartReport:
        events = self.events

        def progress(examples: int, tokens: int) -> None:
            if events is not None:
                events.put_nowait(("progress", task.part, examples, tokens))

        if events is not None:
            # Blocking put: the start is seen before any work happens (tests kill the actor on it).
            events.put(("start", task.part, task.attempt, os.getpid()))
        return run_part(self.handle, self.spec, task, progress)


@dataclass
class PoolResult:
    """Reports of the parts written, and parts given up after `max_attempts` actor deaths."""

    reports: list[PartReport] = field(default_factory=list)
    lost_parts: dict[int, str] = field(default_factory=dict)
    actor_deaths: int = 0
    startup_seconds: float = 0.0


def run_pool(
    spec: WorkerSpec,
    tasks: Sequence[PartTask],
    *,
    actors: int,
    cpus_per_actor: float,
    gpus_per_actor: float = 0.0,
    on_event: Callable[[Event], None] | None = None,
    on_report: Callable[[PartReport], None] | None = None,
    max_attempts: int = 3,
) -> PoolResult:
    """Score `tasks` on `actors` replicas; replace an actor that dies and redo its part.

    Actors take parts as soon as each is ready, so a cluster that holds fewer actors than asked
    for (or is still scaling up) runs the job on those it has; actors that never start are
    cancelled at the end. Raises `ReplicaLoadError` if an actor cannot load the model (or too many
    die while starting). `startup_seconds` is the time until the first actor is ready.
    """
    t0 = time.perf_counter()
    events = Queue(actor_options={"num_cpus": 0})
    options = {"num_cpus": cpus_per_actor, "num_gpus": gpus_per_actor}
    starting: dict = {}  # pid ref -> actor not yet ready (model loading, or waiting for resources)

    def new_actor() -> None:
        actor = ScorerActor.options(**options).remote(spec, events)
        starting[actor.pid.remote()] = actor

    result = PoolResult()
    pending = deque(tasks)
    idle: list = []
    inflight: dict = {}
    waiting_noticed = False
    start_deaths = 0  # actors lost while starting (node lost, killed), not for a bad model

    def drain() -> None:
        for ev in events.get_nowait_batch(events.qsize()) if events.qsize() else []:
            if on_event:
                on_event(ev)

    def admit(ref) -> None:
        nonlocal start_deaths
        actor = starting.pop(ref)
        try:
            ray.get(ref)
        except ray.exceptions.RayActorError as err:
            reason = ([line.strip() for line in str(err).splitlines() if line.strip()] or ["unknown reason"])[-1]
            if err.actor_init_failed:  # its constructor raised: the model does not load, anywhere
                raise ReplicaLoadError(f"an actor could not load the model: {reason}") from err
            start_deaths += 1  # it died starting (its node lost, killed): start another, within bounds
            if start_deaths >= max_attempts * max(actors, 1):
                raise ReplicaLoadError(f"{start_deaths} actors died while starting; the last: {reason}") from err
            ray.kill(actor)
            new_actor()
            return
        if not result.startup_seconds:
            result.startup_seconds = time.perf_counter() - t0
        idle.append(actor)

    try:
        for _ in range(min(actors, len(tasks)) or 1):
            new_actor()
        while pending or inflight:
            while pending and idle:
                actor, task = idle.pop(), pending.popleft()
                inflight[actor.score_part.remote(task)] = (actor, task)
            # Returns as soon as a part is done or an actor is ready; the timeout only paces progress
            # events (each poll costs remote calls, and on a small machine the driver's cycles are the actors').
            done, _ = ray.wait([*inflight, *starting], num_returns=1, timeout=POLL_SECONDS)
            drain()
            if not inflight and not idle and not waiting_noticed and time.perf_counter() - t0 > WAIT_NOTICE_SECONDS:
                waiting_noticed = True
                if on_event:
                    on_event(("waiting", len(starting), cpus_per_actor, gpus_per_actor))
            for ref in done:
                if ref in starting:
                    admit(ref)
                    continue
                actor, task = inflight.pop(ref)
                try:
                    report = ray.get(ref)
                except ray.exceptions.RayActorError as err:
                    result.actor_deaths += 1
                    ray.kill(actor)
                    if task.attempt + 1 < max_attempts:
                        pending.appendleft(PartTask(**{**task.__dict__, "attempt": task.attempt + 1}))
                    else:
                        result.lost_parts[task.part] = f"actor died {max_attempts} times: {err}"[:500]
                    new_actor()
                    continue
                except ray.exceptions.RayTaskError as err:  # e.g. a store write failed: retry, bounded
                    if task.attempt + 1 < max_attempts:
                        pending.appendleft(PartTask(**{**task.__dict__, "attempt": task.attempt + 1}))
                    else:
                        result.lost_parts[task.part] = str(err.cause if hasattr(err, "cause") else err)[:500]
                    idle.append(actor)
                    continue
                result.reports.append(report)
                if on_report:
                    on_report(report)
                idle.append(actor)
        drain()
    finally:
        for a in idle + [a for a, _ in inflight.values()] + list(starting.values()):
            ray.kill(a)
        ray.kill(events.actor)
    return result
