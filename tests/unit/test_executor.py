"""The in-process executor: every unit once, bounded retries, lost units, replica errors, events."""

from __future__ import annotations

import pytest

from cluster.executor import (
    Deferred,
    InProcessExecutor,
    Lost,
    Progress,
    Ready,
    ReplicaError,
    RunStopped,
    Started,
    StopRun,
    Unit,
)


def _double(replica, payload, progress):
    progress(1, payload)
    return replica["scale"] * payload


def test_every_unit_runs_once_with_its_replica_and_events():
    events, results = [], {}
    report = InProcessExecutor().run(
        [Unit(k, k) for k in range(4)],
        _double,
        replica=lambda: {"scale": 2},
        on_result=lambda unit, r: results.__setitem__(unit.key, r),
        on_event=events.append,
    )
    assert results == {0: 0, 1: 2, 2: 4, 3: 6} and report.done == 4 and not report.lost
    assert isinstance(events[0], Ready)
    assert [e.key for e in events if isinstance(e, Started)] == [0, 1, 2, 3]
    assert [e.counts for e in events if isinstance(e, Progress)] == [(1, 0), (1, 1), (1, 2), (1, 3)]


def test_a_failing_unit_is_retried_then_lost_and_the_others_finish():
    tries: dict[int, int] = {}

    def flaky(replica, payload, progress):
        tries[payload] = tries.get(payload, 0) + 1
        if payload == 1 or (payload == 2 and tries[payload] == 1):
            raise OSError(f"unit {payload} failed")
        return payload

    events, done = [], []
    report = InProcessExecutor(max_attempts=3).run(
        [Unit(k, k) for k in range(3)], flaky, on_result=lambda u, r: done.append(r), on_event=events.append
    )
    assert sorted(done) == [0, 2] and tries == {0: 1, 1: 3, 2: 2}
    assert report.lost == {1: "OSError: unit 1 failed"}
    assert [e for e in events if isinstance(e, Lost)] == [Lost(1, "OSError: unit 1 failed")]
    assert [e.attempt for e in events if isinstance(e, Started) and e.key == 1] == [0, 1, 2]


def test_a_replica_that_cannot_be_built_stops_the_run():
    def broken():
        raise RuntimeError("no weights")

    with pytest.raises(ReplicaError, match="no weights"):
        InProcessExecutor().run([Unit(0, 0)], _double, replica=broken)


def test_payloads_are_prepared_just_before_each_try():
    """`prepare` fills a payload only when its unit goes out (and again on a retry): a driver can
    keep units small and read a part's texts only while the part is in flight."""
    log: list[str] = []

    def step(replica, payload, progress):
        log.append(f"run {payload}")
        if payload == "1+" and log.count("run 1+") == 1:
            raise OSError("transient")
        return payload

    def prepare(payload):
        log.append(f"prepare {payload}")
        return f"{payload}+"

    done = []
    InProcessExecutor(max_attempts=2).run(
        [Unit(k, k) for k in range(3)], step, on_result=lambda u, r: done.append((u.payload, r)), prepare=prepare
    )
    assert log == ["prepare 0", "run 0+", "prepare 1", "run 1+", "prepare 1", "run 1+", "prepare 2", "run 2+"]
    assert done == [(0, "0+"), (1, "1+"), (2, "2+")]  # the unit itself keeps its small payload


def _deferred_step(log: list[str], fail_once: set[int] = frozenset(), stop_at: int | None = None):
    """A step that computes `payload * 10` and returns its write as a `Deferred` (logged as it runs)."""
    import threading

    held = {"now": 0, "most": 0}  # units computed whose write has not ended: their results are in memory
    lock = threading.Lock()
    failed: set[int] = set()

    def step(replica, payload, progress):
        log.append(f"compute {payload} on {threading.current_thread().name}")
        with lock:
            held["now"] += 1
            held["most"] = max(held["most"], held["now"])

        def finish():
            try:
                log.append(f"write {payload} on {threading.current_thread().name}")
                if payload == stop_at:
                    raise StopRun("disk full")
                if payload in fail_once and payload not in failed:
                    failed.add(payload)
                    raise OSError("dropped connection")
                return payload * 10
            finally:
                with lock:
                    held["now"] -= 1

        return Deferred(finish)

    return step, held


def test_writes_run_behind_the_next_unit_and_count_only_when_written():
    log: list[str] = []
    step, held = _deferred_step(log)
    done: list[tuple[int, int]] = []
    report = InProcessExecutor().run(
        [Unit(k, k) for k in range(4)], step, on_result=lambda u, r: done.append((u.key, r))
    )
    assert done == [(0, 0), (1, 10), (2, 20), (3, 30)] and report.done == 4
    writes = [line for line in log if line.startswith("write")]
    assert all("vz-writer" in line for line in writes)  # on the writer thread, not the caller's
    assert all("MainThread" in line for line in log if line.startswith("compute"))
    assert held["most"] <= 2  # the unit computed and at most one waiting for its write
    # Unit k's write is handed over only after unit k + 1 was computed: the writes run behind.
    assert log.index("compute 1 on MainThread") < next(i for i, x in enumerate(log) if x.startswith("write 1"))


def test_without_background_writes_each_unit_is_written_before_the_next_is_computed():
    log: list[str] = []
    step, held = _deferred_step(log)
    done: list[int] = []
    InProcessExecutor(background_writes=False).run(
        [Unit(k, k) for k in range(3)], step, on_result=lambda u, r: done.append(r)
    )
    assert [line.split(" on ")[0] for line in log] == [
        "compute 0",
        "write 0",
        "compute 1",
        "write 1",
        "compute 2",
        "write 2",
    ]
    assert done == [0, 10, 20] and held["most"] == 1


def test_a_failed_write_fails_its_unit_which_is_redone_and_counted_once():
    log: list[str] = []
    step, _ = _deferred_step(log, fail_once={1})
    events, done = [], []
    report = InProcessExecutor(max_attempts=2).run(
        [Unit(k, k) for k in range(3)], step, on_result=lambda u, r: done.append((u.key, r)), on_event=events.append
    )
    assert sorted(done) == [(0, 0), (1, 10), (2, 20)] and report.done == 3 and not report.lost
    assert [e.attempt for e in events if isinstance(e, Started) and e.key == 1] == [0, 1]
    assert [line.split(" on ")[0] for line in log].count("compute 1") == 2  # recomputed, then written


def test_a_write_that_stops_the_run_stops_it_and_an_earlier_write_still_counts():
    log: list[str] = []
    step, _ = _deferred_step(log, stop_at=1)
    done: list[int] = []
    with pytest.raises(RunStopped, match="disk full") as stopped:
        InProcessExecutor().run([Unit(k, k) for k in range(4)], step, on_result=lambda u, r: done.append(u.key))
    assert stopped.value.key == 1 and done == [0]
    assert not any(line.startswith("write 2") or line.startswith("compute 3") for line in log)
