"""Where work runs, apart from what it is: an executor runs units of work through a step.

A *step* is a plain function `step(replica, payload, progress) -> result`, importable by name (Ray
pickles it by reference); a *replica factory* builds what a worker keeps between units (a loaded
model), once per worker, or is `None` for steps that need nothing kept. `progress(*counts)` lets
a step report as it goes. Executors never know what a step does, and steps never know where they
run: the in-process executor here and the Ray one (`cluster.ray_executor`) are interchangeable,
so a job is one code path with two executors. `cluster.where` chooses one and places it.

The contract every executor keeps (and a new one, on Slurm or another pattern of Ray, must keep):

- **Units are self-contained when submitted.** A unit's payload (after `prepare`) and the replica
  factory carry everything the step needs, by value or by importable name: no open file, no
  connection, no reliance on the driver's working folder. The executor may pickle them, send them
  to another machine, and run a unit again on another worker.
- **Secrets come from the worker's environment, never from a unit.** A payload or replica factory
  holds no credential (storage options keep only what is no secret: `cluster.credentials`). The
  executor is given `env`, the variables that carry the secrets (None: unset), and sets them in
  every worker before its replica is built or a unit runs: in this process for the run's duration
  (put back after); on Ray through each actor's constructor or around each task.
- **Every unit runs to completion or is reported lost**, at most `max_attempts` tries; a step's
  `StopRun` stops the whole run; an interrupted driver stops every worker.
- **A device never waits for a write.** A step may return `Deferred(finish)`: its device work is
  done and `finish()` (writing what it computed) is all that is left. The worker hands it to a
  background writer with a queue of one (at most one unit's results waiting besides the unit being
  computed) and takes its next unit; the unit counts as done only when `finish` returned, and a
  `finish` that raises fails the unit as a raising step does (retried, lost, or `StopRun`). A worker
  that dies before its writes finished has its units redone.
"""

from __future__ import annotations

import dataclasses
import os
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cluster.credentials import environment

__all__ = [
    "Deferred",
    "Died",
    "Event",
    "Executor",
    "InProcessExecutor",
    "Lost",
    "Progress",
    "Ready",
    "ReplicaError",
    "ReplicaFactory",
    "RunReport",
    "RunStopped",
    "Started",
    "Step",
    "StopRun",
    "Unit",
    "Waiting",
    "failure_reason",
    "finish_now",
]

Step = Callable[[Any, Any, Callable[..., None]], Any]
ReplicaFactory = Callable[[], Any]


@dataclass(frozen=True)
class Unit:
    """One unit of work: a key unique within the run (e.g. a part number) and the step's payload."""

    key: int
    payload: Any
    attempt: int = 0  # 0 on the first try; a unit whose worker died or whose step raised is retried


# What an executor reports while it runs (`on_event`).
@dataclass(frozen=True)
class Ready:
    """A worker holds its replica and takes units."""

    worker: int  # its process id
    seconds: float  # since the run began


@dataclass(frozen=True)
class Started:
    """A worker began a unit (sent before any of the unit's work happens)."""

    key: int
    attempt: int
    worker: int  # its process id


@dataclass(frozen=True)
class Progress:
    """A step reported progress on a unit (what the counts mean is the step's business)."""

    key: int
    counts: tuple[int, ...]


@dataclass(frozen=True)
class Died:
    """A worker died (killed, out of memory, its node lost); its unit, if any, is retried."""

    key: int | None
    reason: str


@dataclass(frozen=True)
class Lost:
    """A unit was given up after `max_attempts` tries."""

    key: int
    reason: str


@dataclass(frozen=True)
class Waiting:
    """No worker is ready yet: they are building replicas or waiting for cluster resources."""

    workers: int
    cpus: float
    gpus: float


Event = Ready | Started | Progress | Died | Lost | Waiting


@dataclass(frozen=True)
class Deferred:
    """What a step returns when its device work is done but its unit is not: `finish()` does the rest
    (writes the results) and returns the unit's result. It never leaves the worker that made it."""

    finish: Callable[[], Any]


def finish_now(result: Any) -> Any:
    """Return a step's final result, running a `Deferred`'s finish here (no background writer)."""
    return result.finish() if isinstance(result, Deferred) else result


class ReplicaError(RuntimeError):
    """A worker could not build its replica: the step cannot run anywhere."""


class StopRun(Exception):
    """Raised by a step for a fault that no retry can fix (a full disk): the whole run stops at once."""


class RunStopped(RuntimeError):
    """The run was stopped by a step's `StopRun`; `key` is the unit that raised it."""

    def __init__(self, key: int, reason: str) -> None:
        super().__init__(reason)
        self.key = key


@dataclass
class RunReport:
    """What a run did: units finished, units lost (key -> reason), worker deaths, time to the first ready worker."""

    done: int = 0
    lost: dict[int, str] = field(default_factory=dict)
    deaths: int = 0
    startup_seconds: float = 0.0


def failure_reason(err: BaseException, limit: int = 500) -> str:
    """Return a one-line reason for `err`: its type and message, cut to `limit` characters."""
    return f"{type(err).__name__}: {err}"[:limit]


class Executor(ABC):
    """Runs units through a step and reports events; `max_attempts` bounds the tries of each unit,
    `env` is what each worker's environment gets (the run's secrets; None: unset).

    A step that raises is retried (a transient fault: a dropped connection); one that raises
    `StopRun` stops the whole run, which raises `RunStopped`. Interrupting the driver
    (`KeyboardInterrupt`) stops every worker before it propagates.
    """

    max_attempts: int = 3
    env: Mapping[str, str | None] = {}
    background_writes: bool = True  # run a step's `Deferred` finish beside the next unit (False: inline)

    @abstractmethod
    def run(
        self,
        units: Iterable[Unit],
        step: Step,
        *,
        replica: ReplicaFactory | None = None,
        on_result: Callable[[Unit, Any], None] | None = None,
        on_event: Callable[[Event], None] | None = None,
        prepare: Callable[[Any], Any] | None = None,
    ) -> RunReport:
        """Run every unit once to completion (or until lost); call `on_result` with each result.

        `prepare(payload)`, if given, is called in this process on a unit's payload just before the
        unit goes to a worker (and again on a retry): the step gets what it returns. Payloads can
        then stay small (a part's id range) and be filled (its texts) only while in flight.
        """


class InProcessExecutor(Executor):
    """Run units one after another in this process, with one replica (no Ray); `env` is set in this
    process for the run's duration (the worker is this process). A step's `Deferred` finish runs on
    a writer thread while the next unit is computed; results and events stay on the calling thread."""

    def __init__(
        self,
        *,
        max_attempts: int = 3,
        env: Mapping[str, str | None] | None = None,
        background_writes: bool = True,
    ) -> None:
        self.max_attempts = max_attempts
        self.env = dict(env or {})
        self.background_writes = background_writes

    def run(self, units, step, *, replica=None, on_result=None, on_event=None, prepare=None) -> RunReport:
        with environment(self.env):
            return _InProcessRun(self, step, on_result, on_event, prepare).run(deque(units), replica)


class _InProcessRun:
    """One run of the in-process executor: the queue, the one write in flight, the report."""

    def __init__(self, ex: InProcessExecutor, step: Step, on_result, on_event, prepare) -> None:
        self.ex, self.step = ex, step
        self.emit = on_event or (lambda ev: None)
        self.done = on_result or (lambda unit, result: None)
        self.fill = prepare or (lambda payload: payload)
        self.report = RunReport()
        self.writing: tuple[Unit, Future] | None = None  # the queue of one: a unit whose finish runs

    def run(self, queue: deque, replica: ReplicaFactory | None) -> RunReport:
        t0 = time.perf_counter()
        try:
            state = replica() if replica is not None else None
        except Exception as err:
            raise ReplicaError(f"the replica could not be built: {failure_reason(err)}") from err
        self.report.startup_seconds = time.perf_counter() - t0
        self.emit(Ready(os.getpid(), self.report.startup_seconds))
        writer = ThreadPoolExecutor(1, thread_name_prefix="vz-writer") if self.ex.background_writes else None
        try:
            while queue or self.writing:
                if not queue:
                    self.settle(queue)
                    continue
                unit = queue.popleft()
                result = self.compute(state, unit, queue)
                if not isinstance(result, Deferred):
                    if result is not _FAILED:
                        self.succeed(unit, result)
                    continue
                if writer is None:
                    self.writing = (unit, _run_now(result.finish))
                else:
                    self.settle(queue)  # one write at a time: this unit's results wait for the last one's
                    self.writing = (unit, writer.submit(result.finish))
                    continue
                self.settle(queue)
        except RunStopped:
            if self.writing is not None:  # a unit written before the stop still counts
                self.settle(deque(), quiet=True)
            raise
        finally:
            if writer is not None:
                writer.shutdown(wait=True)  # an interrupted run never leaves a write behind it
        return self.report

    def compute(self, state: Any, unit: Unit, queue: deque) -> Any:
        """Run `unit`'s step; return its result, or `_FAILED` when it raised (then retried or lost)."""
        self.emit(Started(unit.key, unit.attempt, os.getpid()))

        def progress(*counts: int, key: int = unit.key) -> None:
            self.emit(Progress(key, tuple(counts)))

        try:
            return self.step(state, self.fill(unit.payload), progress)
        except StopRun as err:
            raise RunStopped(unit.key, str(err)) from err
        except Exception as err:  # a failing unit is retried, bounded, like a failing Ray task
            self.fail(unit, err, queue)
            return _FAILED

    def settle(self, queue: deque, *, quiet: bool = False) -> None:
        """Wait for the write in flight; count its unit, or retry it as a failed step is."""
        if self.writing is None:
            return
        (unit, future), self.writing = self.writing, None
        try:
            result = future.result()
        except StopRun as err:
            if not quiet:
                raise RunStopped(unit.key, str(err)) from err
            return
        except Exception as err:
            if not quiet:
                self.fail(unit, err, queue)
            return
        self.succeed(unit, result)

    def succeed(self, unit: Unit, result: Any) -> None:
        self.report.done += 1
        self.done(unit, result)

    def fail(self, unit: Unit, err: Exception, queue: deque) -> None:
        if unit.attempt + 1 < self.ex.max_attempts:
            queue.appendleft(dataclasses.replace(unit, attempt=unit.attempt + 1))
        else:
            self.report.lost[unit.key] = failure_reason(err)
            self.emit(Lost(unit.key, self.report.lost[unit.key]))


_FAILED = object()  # a step that raised (its unit already retried or lost)


def _run_now(fn: Callable[[], Any]) -> Future:
    """Run `fn` here and return its outcome as a finished future (writes without a writer thread)."""
    future: Future = Future()
    try:
        future.set_result(fn())
    except BaseException as err:  # KeyboardInterrupt included: it propagates from `result()`
        future.set_exception(err)
    return future
