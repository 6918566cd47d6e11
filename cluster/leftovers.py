"""Records of the processes a driver's local cluster started, so that the next run can end the ones
that outlived their driver.

A local cluster's processes are the driver's children; most end with it even when it is killed
(SIGKILL), but Ray's per-node agents outlive it. So the driver records what its start added to its
process tree (process id, start time, executable) in the user's private folder (`cluster.userdir`),
and the next driver that starts a local cluster ends those of a driver that is gone: by process id,
and only a process that is still the one recorded (same start time and executable) and still this
user's. Not the command line: Ray renames its processes once they run (`ray::DashboardAgent`).
A record is never read from a folder that others can write.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from cluster.userdir import private_dir

__all__ = ["children", "end_leftovers", "end_started", "record_started"]


def _psutil():
    try:
        import psutil
    except ImportError:  # nothing is recorded, so nothing is ended
        return None
    return psutil


def children() -> set[tuple[int, float]]:
    """Return this process's descendants now, as (process id, start time)."""
    psutil = _psutil()
    if psutil is None:
        return set()
    out = set()
    for c in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):  # already gone
            out.add((c.pid, c.create_time()))
    return out


def _described(pids: set[tuple[int, float]]) -> list[list]:
    psutil = _psutil()
    out = []
    for pid, started in sorted(pids):
        with contextlib.suppress(psutil.Error):  # already gone
            out.append([pid, started, psutil.Process(pid).exe()])
    return out


def record_started(before: set[tuple[int, float]]) -> Path | None:
    """Write down the processes started since `before` (see `children`); return the record's path."""
    psutil = _psutil()
    if psutil is None:
        return None
    me = psutil.Process()
    record = {
        "driver": [me.pid, me.create_time(), me.exe()],
        "processes": _described(children() - before),
    }
    path = private_dir("clusters") / f"{me.pid}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)  # a reader never sees half a record
    return path


def end_started(before: set[tuple[int, float]]) -> list[int]:
    """End the processes started since `before` (a start that failed half-way); return their ids."""
    psutil = _psutil()
    if psutil is None:
        return []
    return _end(psutil, _described(children() - before))


def end_leftovers() -> list[int]:
    """End the recorded processes of local clusters whose driver is gone; return their process ids."""
    psutil = _psutil()
    if psutil is None:
        return []
    ended = []
    for path in sorted(private_dir("clusters").glob("*.json")):
        try:
            record = json.loads(path.read_text())
            driver, processes = record["driver"], record["processes"]
            if _is_recorded(psutil, *driver):
                continue  # that driver still runs: its cluster is its own
            ended += _end(psutil, processes)
        except (OSError, ValueError, TypeError, KeyError):
            pass  # unreadable or not a record: nothing in it is trusted
        path.unlink(missing_ok=True)
    return ended


def _end(psutil, processes: list[list]) -> list[int]:
    ended = []
    for pid, started, exe in processes:
        if _is_recorded(psutil, pid, started, exe):
            try:
                psutil.Process(pid).kill()
                ended.append(pid)
            except psutil.Error:
                pass
    return ended


def _is_recorded(psutil, pid: int, started: float, exe: str) -> bool:
    """Whether process `pid` is still the one recorded (not a reused id) and still this user's."""
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            return abs(p.create_time() - started) < 1e-3 and p.exe() == exe and p.uids().real == os.getuid()
    except psutil.Error:
        return False
