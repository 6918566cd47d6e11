"""One store, one writer of its root: a lease file that a second run sees and refuses.

The driver holds the lease (`.vz-lease.json` in the store: host, process, run id, heartbeat) while
it plans, writes the root attributes and runs the parts, and refreshes it from a background thread.
A second run refuses to start, naming the holder. A lease whose process is gone (same host) or whose
heartbeat is older than `expiry` seconds is stale and taken over, with a warning; `--break-lock`
takes over any lease, for a holder known to be gone. On object storage the lease is written, then
read back: two runs starting within the same instant could both see theirs, a race the heartbeat
then exposes to the loser at its next refresh (it stops with an error).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from jobs.score.validate import JobError
from vzcore.store.layout import LEASE_FILE
from vzcore.store.location import Location

__all__ = ["DEFAULT_EXPIRY", "hold_lease", "read_lease"]

DEFAULT_EXPIRY = 600.0  # seconds without a heartbeat after which a lease is stale
HEARTBEAT = 30.0  # seconds between refreshes


def read_lease(location: Location) -> dict | None:
    """Return the lease of the store at `location`, or None when no run holds it."""
    fs, path = location.filesystem(LEASE_FILE)
    try:
        return json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return None
    except ValueError:  # a torn write: treat as stale
        return {"host": "?", "pid": -1, "run_id": "?", "heartbeat": 0.0}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _stale(lease: dict, expiry: float) -> str | None:
    """Return why `lease` no longer holds (its process gone, its heartbeat too old), or None."""
    if lease.get("host") == socket.gethostname() and not _alive(int(lease.get("pid", -1))):
        return f"its process {lease.get('pid')} on this host is gone"
    age = time.time() - float(lease.get("heartbeat", 0))
    if age > expiry:
        return f"its heartbeat is {age:.0f} s old (expiry {expiry:.0f} s)"
    return None


@contextmanager
def hold_lease(location: Location, *, break_lock: bool = False, expiry: float = DEFAULT_EXPIRY) -> Iterator[dict]:
    """Hold the store's lease for the duration; raise `JobError` if another live run holds it."""
    fs, path = location.filesystem(LEASE_FILE)
    held = read_lease(location)
    if held is not None:
        why = "--break-lock" if break_lock else _stale(held, expiry)
        if why is None:
            age = time.time() - float(held.get("heartbeat", 0))
            raise JobError(
                f"another run is writing {location.path}: process {held.get('pid')} on host {held.get('host')}"
                f" (heartbeat {age:.0f} s ago); wait for it to finish, or if it is gone pass --break-lock"
                f" (a lease not refreshed for {expiry:.0f} s expires by itself)"
            )
        warnings.warn(f"taking over the lease of process {held.get('pid')} on {held.get('host')}: {why}", stacklevel=3)
    mine = {"host": socket.gethostname(), "pid": os.getpid(), "run_id": uuid.uuid4().hex, "started": time.time()}

    def write() -> None:
        fs.pipe_file(path, json.dumps({**mine, "heartbeat": time.time()}).encode())

    write()
    if (read_lease(location) or {}).get("run_id") != mine["run_id"]:
        raise JobError(f"another run took the lease of {location.path} at the same moment; rerun to resume")
    stop = threading.Event()
    lost: list[str] = []

    def beat() -> None:
        while not stop.wait(HEARTBEAT):
            now = read_lease(location) or {}
            if now.get("run_id") != mine["run_id"]:
                lost.append(f"process {now.get('pid')} on {now.get('host')} took it over")
                return
            write()

    thread = threading.Thread(target=beat, name="vz-lease", daemon=True)
    thread.start()
    try:
        yield mine
        if lost:
            raise JobError(f"the lease of {location.path} was lost: {lost[0]}; the store may hold both runs' parts")
    finally:
        stop.set()
        thread.join(timeout=5)
        if (read_lease(location) or {}).get("run_id") == mine["run_id"]:
            fs.rm_file(path)
