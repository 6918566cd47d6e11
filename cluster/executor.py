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
"""

from __future__ import annotations

import dataclasses
import os
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cluster.credentials import environment

__all__ = [
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
    process for the run's duration (the worker is this process)."""

    def __init__(self, *, max_attempts: int = 3, env: Mapping[str, str | None] | None = None) -> None:
        self.max_attempts = max_attempts
        self.env = dict(env or {})

    def run(self, units, step, *, replica=None, on_result=None, on_event=None, prepare=None) -> RunReport:
        with environment(self.env):
            return self._run(units, step, replica, on_result, on_event, prepare)

    def _run(self, units, step, replica, on_result, on_event, prepare) -> RunReport:
        emit = on_event or (lambda ev: None)
        fill = prepare or (lambda payload: payload)
        t0 = time.perf_counter()
        try:
            state = replica() if replica is not None else None
        except Exception as err:
            raise ReplicaError(f"the replica could not be built: {failure_reason(err)}") from err
        report = RunReport(startup_seconds=time.perf_counter() - t0)
        emit(Ready(os.getpid(), report.startup_seconds))
        queue = deque(units)
        while queue:
            unit = queue.popleft()
            emit(Started(unit.key, unit.attempt, os.getpid()))

            def progress(*counts: int, key: int = unit.key) -> None:
                emit(Progress(key, tuple(counts)))

            try:
                result = step(state, fill(unit.payload), progress)
            except StopRun as err:
                raise RunStopped(unit.key, str(err)) from err
            except Exception as err:  # a failing unit is retried, bounded, like a failing Ray task
                if unit.attempt + 1 < self.max_attempts:
                    queue.appendleft(dataclasses.replace(unit, attempt=unit.attempt + 1))
                else:
                    report.lost[unit.key] = failure_reason(err)
                    emit(Lost(unit.key, report.lost[unit.key]))
                continue
            report.done += 1
            if on_result is not None:
                on_result(unit, result)
        return report
