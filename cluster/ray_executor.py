"""Run units of work on a Ray cluster: a pool of actors when a step needs a replica, tasks otherwise.

Why not Ray Data: measured here each Ray Data pipeline paid 19-30 s of fixed overhead on 2 cores,
retried deterministic failures forever by default, and deadlocked on resume; a unit (a part) is
already the unit of work, write and resume, so a pool of actors fed unit descriptors is all the
scheduling a job needs. Ray's plain actors are not restarted (`max_restarts=0`); here a dead actor
is replaced and its unit redone from scratch by the new actor, so one unit still has one worker.
The progress queue is pinned to the driver's node: losing another node never takes it down.

A step's `Deferred` finish (writing a part) runs on the actor's writer thread while the actor
computes its next unit: `run` returns as soon as the finish is handed over, the driver gives the
actor its next unit and asks `written` (a second call, served by the actor's second thread) for
the unit's result, which arrives when the write finished. A unit counts as done only then; an
actor that dies first fails both calls, and its units are redone on a new actor.

The run's secrets (`env`) reach an actor as an argument of its constructor, which sets them in the
actor's process before the replica is built, and a task as an argument it sets around its step
(a task's worker process may run other tasks of the job after it). Not Ray's `runtime_env`: Ray
writes a runtime environment, its variables included, to the runtime-env agent's log of each node
and shows it to anyone who lists the cluster's actors and tasks.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import ray
from ray.util.queue import Queue
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cluster.credentials import apply_env, environment
from cluster.executor import (
    Deferred,
    Died,
    Event,
    Executor,
    Lost,
    Progress,
    Ready,
    ReplicaError,
    RunReport,
    RunStopped,
    Started,
    Step,
    StopRun,
    Unit,
    Waiting,
    failure_reason,
    finish_now,
)

__all__ = ["RayExecutor"]

POLL_SECONDS = 0.5  # how often the driver forwards progress events while units run
WAIT_NOTICE_SECONDS = 30.0  # with no actor ready by then, say that the run waits for resources


# Three threads: `run` (computing), `written` (waiting on a write) and the brief overlap of the next
# `written` with the last one's return; the writer is a thread of its own.
@ray.remote(max_restarts=0, max_concurrency=3)  # type: ignore[call-overload]  # Ray's stubs lack max_concurrency
class _Worker:
    """Hold one replica; run the units it is given through the step, writing behind the next one."""

    def __init__(
        self, step: Step, replica: Callable[[], Any], events: Queue, env: dict[str, str | None], background: bool
    ) -> None:
        apply_env(env)  # this process is the actor's alone: nothing to put back
        self.step = step
        self.events = events
        self.replica = replica()
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="vz-writer") if background else None
        self.writes: dict[tuple[int, int], Future] = {}
        self.last: Future | None = None

    def pid(self) -> int:
        return os.getpid()

    def run(self, unit: Unit) -> tuple[bool, Any]:
        """Compute `unit`; return `(True, None)` when its finish went to the writer (ask `written`),
        else `(False, result)`."""
        events = self.events

        def progress(*counts: int) -> None:
            events.put_nowait(Progress(unit.key, tuple(counts)))

        # Blocking put: the start is seen before any work happens (tests kill the actor on it).
        events.put(Started(unit.key, unit.attempt, os.getpid()))
        result = self.step(self.replica, unit.payload, progress)
        if self.writer is None or not isinstance(result, Deferred):
            return False, finish_now(result)
        if self.last is not None:  # the queue of one: these results wait until the last write ended
            self.last.exception()
        self.last = self.writes[unit.key, unit.attempt] = self.writer.submit(result.finish)
        return True, None

    def written(self, key: int, attempt: int) -> Any:
        """Wait for the write of `run`'s unit `key` and return its result (or raise its error)."""
        return self.writes.pop((key, attempt)).result()


def _run_task(step: Step, payload: Any, env: dict[str, str | None]) -> Any:
    with environment(env):
        return finish_now(step(None, payload, lambda *counts: None))


def _last_line(err: BaseException) -> str:
    return ([line.strip() for line in str(err).splitlines() if line.strip()] or ["unknown reason"])[-1]


class RayExecutor(Executor):
    """Run units on the connected Ray cluster (see `cluster.connect`).

    With a replica factory: `workers` actors of `cpus`/`gpus` each; actors take units as soon as
    each is ready, so a cluster that holds fewer (or is still scaling up) runs on those it has. A
    dead actor is replaced and its unit retried; a unit whose step raises is retried on the same
    actor; after `max_attempts` a unit is lost. A step's `Deferred` finish runs on the actor's
    writer thread while it computes its next unit (`background_writes`). Without one: a Ray task per unit (Ray retries
    those whose worker or node died), at most `max_in_flight` at once. Every worker gets `env`.
    """

    def __init__(
        self,
        *,
        workers: int = 1,
        cpus: float = 1.0,
        gpus: float = 0.0,
        max_attempts: int = 3,
        max_in_flight: int = 64,
        env: Mapping[str, str | None] | None = None,
        background_writes: bool = True,
    ) -> None:
        self.workers, self.cpus, self.gpus = workers, cpus, gpus
        self.max_attempts, self.max_in_flight = max_attempts, max_in_flight
        self.env = dict(env or {})
        self.background_writes = background_writes

    def run(self, units, step, *, replica=None, on_result=None, on_event=None, prepare=None) -> RunReport:
        emit = on_event or (lambda ev: None)
        done = on_result or (lambda unit, result: None)
        fill = prepare or (lambda payload: payload)
        if replica is None:
            return self._run_tasks(list(units), step, done, emit, fill)
        return _Pool(self, step, replica, done, emit, fill).run(deque(units))

    def _run_tasks(self, units: list[Unit], step: Step, done, emit, fill) -> RunReport:
        # Retried by Ray when the step raises or its worker dies (Ray cannot exempt `StopRun` from
        # retries: it takes effect once the task's tries are spent).
        remote = ray.remote(_run_task).options(
            num_cpus=self.cpus, max_retries=self.max_attempts - 1, retry_exceptions=True
        )
        report = RunReport()
        pending: dict = {}
        todo = deque(units)
        while todo or pending:
            while todo and len(pending) < self.max_in_flight:
                unit = todo.popleft()
                pending[remote.remote(step, fill(unit.payload), self.env)] = unit
            ready, _ = ray.wait(list(pending), num_returns=1)
            unit = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayError as err:  # the step raised (RayTaskError) or its worker died
                if isinstance(getattr(err, "cause", None), StopRun):
                    for ref in pending:
                        ray.cancel(ref, force=True)
                    raise RunStopped(unit.key, str(err.cause)) from err
                report.lost[unit.key] = failure_reason(getattr(err, "cause", None) or err)
                emit(Lost(unit.key, report.lost[unit.key]))
                continue
            report.done += 1
            done(unit, result)
        return report


class _Pool:
    """One run of an actor pool: the state a driver keeps while its actors work."""

    def __init__(self, ex: RayExecutor, step: Step, replica, done, emit: Callable[[Event], None], fill) -> None:
        self.ex, self.step, self.replica, self.done, self.emit, self.fill = ex, step, replica, done, emit, fill
        node = ray.get_runtime_context().get_node_id()
        pin = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
        self.events = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": pin})
        self.starting: dict = {}  # pid ref -> actor not yet ready (building its replica, or waiting for resources)
        self.idle: list = []
        self.inflight: dict = {}  # result ref -> (actor, unit, stage): stage "run" (computing) or "write"
        self.report = RunReport()
        self.start_deaths = 0  # actors lost while starting (node lost, killed), not for a bad replica
        self.t0 = time.perf_counter()

    def new_actor(self) -> None:
        actor = _Worker.options(num_cpus=self.ex.cpus, num_gpus=self.ex.gpus).remote(
            self.step, self.replica, self.events, self.ex.env, self.ex.background_writes
        )
        self.starting[actor.pid.remote()] = actor

    def run(self, pending: deque) -> RunReport:
        waiting_noticed = False
        try:
            for _ in range(min(self.ex.workers, len(pending)) or 1):
                self.new_actor()
            while pending or self.inflight:
                while pending and self.idle:
                    actor, unit = self.idle.pop(), pending.popleft()
                    sent = dataclasses.replace(unit, payload=self.fill(unit.payload))
                    self.inflight[actor.run.remote(sent)] = (actor, unit, "run")
                # Returns as soon as a unit is done or an actor is ready; the timeout only paces progress
                # events (each poll costs remote calls, and on a small machine the driver's cycles are the actors').
                ready, _ = ray.wait([*self.inflight, *self.starting], num_returns=1, timeout=POLL_SECONDS)
                self.drain()
                slow = time.perf_counter() - self.t0 > WAIT_NOTICE_SECONDS
                if not self.inflight and not self.idle and not waiting_noticed and slow:
                    waiting_noticed = True
                    self.emit(Waiting(len(self.starting), self.ex.cpus, self.ex.gpus))
                for ref in ready:
                    if ref in self.starting:
                        self.admit(ref)
                    elif ref in self.inflight:  # not when its actor's death already retried it
                        self.finish(ref, pending)
            self.drain()
        finally:
            for actor in self.idle + [a for a, _, _ in self.inflight.values()] + list(self.starting.values()):
                ray.kill(actor)
            ray.kill(self.events.actor)
        return self.report

    def drain(self) -> None:
        size = self.events.qsize()
        for ev in self.events.get_nowait_batch(size) if size else []:
            self.emit(ev)

    def admit(self, ref) -> None:
        actor = self.starting.pop(ref)
        try:
            pid = ray.get(ref)
        except ray.exceptions.RayActorError as err:
            if err.actor_init_failed:  # its replica factory raised: it fails the same anywhere
                raise ReplicaError(f"an actor could not build its replica: {_last_line(err)}") from err
            self.start_deaths += 1  # it died starting (its node lost, killed): start another, within bounds
            if self.start_deaths >= self.ex.max_attempts * max(self.ex.workers, 1):
                raise ReplicaError(
                    f"{self.start_deaths} actors died while starting; the last: {_last_line(err)}"
                ) from err
            self.emit(Died(None, _last_line(err)))
            ray.kill(actor)
            self.new_actor()
            return
        if not self.report.startup_seconds:
            self.report.startup_seconds = time.perf_counter() - self.t0
        self.emit(Ready(pid, time.perf_counter() - self.t0))
        self.idle.append(actor)

    def finish(self, ref, pending: deque) -> None:
        actor, unit, stage = self.inflight.pop(ref)
        try:
            handed, result = ray.get(ref) if stage == "run" else (False, ray.get(ref))
        except ray.exceptions.RayActorError as err:
            self.died(actor, unit, err, pending)
            return
        except ray.exceptions.RayTaskError as err:  # the step or its write raised (a write failed): retry, bounded
            if isinstance(getattr(err, "cause", None), StopRun):
                raise RunStopped(unit.key, str(err.cause)) from err
            self.retry_or_lose(unit, pending, failure_reason(getattr(err, "cause", None) or err))
            if stage == "run":
                self.idle.append(actor)
            return
        if stage == "run":
            self.idle.append(actor)  # its device is free: the next unit goes to it while it writes
        if handed:
            self.inflight[actor.written.remote(unit.key, unit.attempt)] = (actor, unit, "write")
            return
        self.report.done += 1
        self.done(unit, result)

    def died(self, actor, unit: Unit, err: BaseException, pending: deque) -> None:
        """Replace a dead actor; redo every unit it held, computing or writing."""
        self.report.deaths += 1
        self.emit(Died(unit.key, _last_line(err)))
        ray.kill(actor)
        if actor in self.idle:
            self.idle.remove(actor)
        held = [unit]
        for ref in [r for r, (a, _, _) in self.inflight.items() if a == actor]:
            held.append(self.inflight.pop(ref)[1])
        for u in sorted(held, key=lambda u: u.key, reverse=True):  # the earliest unit goes first again
            self.retry_or_lose(u, pending, f"its actor died {self.ex.max_attempts} times: {_last_line(err)}")
        self.new_actor()

    def retry_or_lose(self, unit: Unit, pending: deque, reason: str) -> None:
        if unit.attempt + 1 < self.ex.max_attempts:
            pending.appendleft(dataclasses.replace(unit, attempt=unit.attempt + 1))
        else:
            self.report.lost[unit.key] = reason[:500]
            self.emit(Lost(unit.key, self.report.lost[unit.key]))
