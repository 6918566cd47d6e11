"""Process-level allocator settings for scoring on CPUs: an explicit opt-in, `keep_freed_memory()`.

The library never calls it by itself: it changes how the whole process allocates, which is the
process owner's choice. The scoring job's workers, the in-process job and the benchmark call it,
since they own their process; call it yourself before scoring on a CPU to get the same speed.

Every chunk of pairs allocates tensors of tens of MiB. glibc's malloc serves those with fresh
`mmap`s and hands freed memory back to the system, so each chunk pays page faults and kernel
zeroing for every temporary — measured here as a third of the fast path's time on MiniLM.
Raising the mmap threshold (to its 32 MiB cap) and the trim threshold (to 256 MiB) keeps freed
blocks in the heap for reuse. Set `VZ_MALLOC_TUNING=0` to make the call a no-op.

The trim threshold bounds only the top of the main heap. Freed blocks elsewhere (other arenas, and
holes that texts of every length leave) stay resident, so a long-running process (a job's actor)
crept up by hundreds of MiB per pass over a corpus. Such a process calls `bound_freed_memory()`
between batches: once it has grown more than `TRIM_THRESHOLD` since the tuning or the last trim,
every arena's free pages go back to the system (`malloc_trim(0)`); and with `limit=0` between
larger units of work (a job's parts), which keeps its peak from drifting up pass after pass. A
trim costs the page faults that refill the heap afterwards (about 5 % of a job's time when done
after every 1.5-second part), so the latter is paced with `every` seconds between trims.
"""

from __future__ import annotations

import ctypes
import os
import time

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "bound_freed_memory", "keep_freed_memory"]

# glibc caps M_MMAP_THRESHOLD at 32 MiB on 64-bit; CPU chunks are sized to stay below it.
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 256 * 2**20  # freed memory kept resident for reuse, at most (about)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_done: list[bool] = []
_baseline: list[int] = []  # resident bytes after the tuning (the model already loaded) or the last trim
_last_trim: list[float] = []  # when the tuning or the last trim happened (time.monotonic)


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to tune
        return None


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def keep_freed_memory() -> bool:
    """Keep freed large blocks in glibc's heap (once per process); return whether it applies."""
    if _done:
        return _done[0]
    ok = False
    libc = _libc() if os.environ.get("VZ_MALLOC_TUNING", "1") != "0" else None
    if libc is not None:
        try:
            ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            )
        except AttributeError:
            ok = False
    if ok and (rss := _resident_bytes()) is not None:
        _baseline.append(rss)
        _last_trim.append(time.monotonic())
    _done.append(ok)
    return ok


def bound_freed_memory(limit: int = TRIM_THRESHOLD, *, every: float = 0.0) -> bool:
    """Give free pages back if this process grew more than `limit` bytes since the tuning or the
    last trim, and at least `every` seconds have passed since then; return whether it trimmed.
    Measuring from the last trim, memory that stays in use (results not yet written) does not make
    every later call trim.

    Costs a read of `/proc/self/statm` when under the limit, a few milliseconds when trimming.
    """
    if not (_done and _done[0] and _baseline) or time.monotonic() - _last_trim[0] < every:
        return False
    rss = _resident_bytes()
    if rss is None or rss - _baseline[0] <= limit:
        return False
    libc = _libc()
    trimmed = libc is not None and bool(libc.malloc_trim(0))
    _baseline[0] = _resident_bytes() or rss
    _last_trim[0] = time.monotonic()
    return trimmed
