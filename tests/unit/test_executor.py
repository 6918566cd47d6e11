"""The in-process executor: every unit once, bounded retries, lost units, replica errors, events."""

from __future__ import annotations

import pytest

from cluster.executor import InProcessExecutor, Lost, Progress, Ready, ReplicaError, Started, Unit


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
