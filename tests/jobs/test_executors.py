"""One job, two executors: in-process and on Ray give identical stores; the Ray executor keeps the
in-process one's semantics (every unit once, bounded retries, lost units)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

from cluster.executor import InProcessExecutor, Lost, Unit  # noqa: E402
from jobs.score import run_job  # noqa: E402
from tests.support import TEXTS, hang_guard, job_config  # noqa: E402
from vzcore.store.layout import part_path  # noqa: E402
from vzcore.store.root import read_plan  # noqa: E402

pytestmark = pytest.mark.slow


def _flaky(replica, payload, progress):
    if payload == 1:
        raise OSError("unit 1 always fails")
    return payload * 10


def _flaky_write(replica, payload, progress):
    """`_flaky`, failing in its write instead (a `Deferred` finish, run behind the next unit)."""
    from cluster.executor import Deferred

    return Deferred(lambda: _flaky(replica, payload, progress))


def _secret(replica, payload, progress):
    return os.environ.get("VZ_TEST_SECRET")


def _arrays(group, prefix=""):
    out = {}
    for name, node in group.members():
        if isinstance(node, zarr.Group):
            out.update(_arrays(node, f"{prefix}{name}/"))
        else:
            out[f"{prefix}{name}"] = node[:]
    return out


def test_the_same_job_in_process_and_on_ray_writes_identical_stores(ray_cluster, tmp_path, tiny_model_dir, texts_jsonl):
    here = job_config(tmp_path / "here", tiny_model_dir, texts_jsonl, limit=len(TEXTS), actors=0)
    there = job_config(tmp_path / "ray", tiny_model_dir, texts_jsonl, limit=len(TEXTS), actors=1, cpus_per_actor=1)
    with hang_guard():
        a, b = run_job(here), run_job(there)
    assert (a.scored, a.skipped, a.failed) == (b.scored, b.skipped, b.failed) == (len(TEXTS) - 1, 1, 0)
    ra, rb = zarr.open_group(here.out, mode="r"), zarr.open_group(there.out, mode="r")
    attrs_a, attrs_b = dict(ra.attrs), dict(rb.attrs)
    for attrs in (attrs_a, attrs_b):
        attrs["config"] = {k: v for k, v in attrs["config"].items() if k not in ("out", "actors", "cpus_per_actor")}
    assert attrs_a == attrs_b
    assert read_plan(ra) == read_plan(rb)
    for p in read_plan(ra):
        ga, gb = ra[part_path(p["part"])], rb[part_path(p["part"])]
        assert dict(ga.attrs) == dict(gb.attrs)
        xa, xb = _arrays(ga), _arrays(gb)
        assert sorted(xa) == sorted(xb)
        for name in xa:
            if xa[name].dtype.kind == "f":
                # Float scores may differ in the last bit: the actor's torch uses 1 thread, this process
                # may use 2, and a reduction split across threads rounds differently (seen: 7.5e-9).
                np.testing.assert_allclose(xa[name], xb[name], rtol=0, atol=1e-6, err_msg=f"part {p['part']}: {name}")
            else:
                np.testing.assert_array_equal(xa[name], xb[name], err_msg=f"part {p['part']}: {name}")


@pytest.mark.parametrize("step", [_flaky, _flaky_write])
def test_ray_tasks_and_actors_keep_the_in_process_semantics(ray_cluster, step):
    from ray import cloudpickle

    from cluster.ray_executor import RayExecutor

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import the tests

    units = [Unit(k, k) for k in range(4)]
    for executor, replica in (
        (InProcessExecutor(max_attempts=2), None),
        (InProcessExecutor(max_attempts=2, background_writes=False), None),
        (RayExecutor(max_attempts=2), None),  # tasks
        (RayExecutor(workers=1, cpus=1, max_attempts=2), dict),  # an actor holding a replica
        (RayExecutor(workers=2, cpus=1, max_attempts=2, background_writes=False), dict),
    ):
        done, events, prepared = {}, [], []
        report = executor.run(
            units,
            step,
            replica=replica,
            on_result=lambda u, r, done=done: done.__setitem__(u.key, r),
            on_event=events.append,
            prepare=lambda payload, prepared=prepared: prepared.append(payload) or payload,  # in the driver
        )
        assert done == {0: 0, 2: 20, 3: 30}, (executor, report.lost)
        assert set(prepared) == {0, 1, 2, 3}
        assert list(report.lost) == [1] and "unit 1 always fails" in report.lost[1]
        assert [e.key for e in events if isinstance(e, Lost)] == [1]


def test_ray_workers_get_the_run_environment_and_tasks_put_it_back(ray_cluster):
    """The executor contract: secrets reach each worker through its environment, not through a unit."""
    from ray import cloudpickle

    from cluster.ray_executor import RayExecutor

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    units = [Unit(k, k) for k in range(4)]
    env = {"VZ_TEST_SECRET": "from the environment"}
    for executor, replica in ((RayExecutor(env=env, max_in_flight=1), None), (RayExecutor(workers=1, env=env), dict)):
        seen: dict = {}
        executor.run(units, _secret, replica=replica, on_result=lambda u, r, seen=seen: seen.__setitem__(u.key, r))
        assert seen == dict.fromkeys(range(4), "from the environment"), executor
    seen = {}  # the job's task workers, reused: each put back what it was given
    RayExecutor(max_in_flight=1).run(units, _secret, on_result=lambda u, r: seen.__setitem__(u.key, r))
    assert seen == dict.fromkeys(range(4))
