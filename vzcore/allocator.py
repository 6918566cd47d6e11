"""Process-level allocator settings for scoring on CPUs.

Every chunk of pairs allocates tensors of tens of MiB. glibc's malloc serves those with fresh
`mmap`s and hands freed memory back to the system, so each chunk pays page faults and kernel
zeroing for every temporary — measured here as a third of the fast path's time on MiniLM.
Raising the mmap threshold (to its 32 MiB cap) and the trim threshold (to 256 MiB) keeps freed
blocks in the heap for reuse. Set `VZ_MALLOC_TUNING=0` to leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]

# glibc caps M_MMAP_THRESHOLD at 32 MiB on 64-bit; CPU chunks are sized to stay below it.
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 256 * 2**20  # at most this much freed memory stays resident
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_done: list[bool] = []


def keep_freed_memory() -> bool:
    """Keep freed large blocks in glibc's heap (once per process); return whether it applies."""
    if _done:
        return _done[0]
    ok = False
    if os.environ.get("VZ_MALLOC_TUNING", "1") != "0":
        try:
            libc = ctypes.CDLL("libc.so.6")
            ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            )
        except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
            ok = False
    _done.append(ok)
    return ok
