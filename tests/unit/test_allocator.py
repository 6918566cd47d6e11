"""The allocator tuning keeps freed memory for speed, and gives it back once a process grew too much."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vzcore import allocator

MiB = 2**20


def test_freed_memory_goes_back_once_the_process_grew_past_the_limit():
    if not allocator.keep_freed_memory() or allocator._resident_bytes() is None:
        pytest.skip("needs glibc's malloc and /proc (Linux)")
    allocator._libc().malloc_trim(0)  # start from a trimmed heap, measured from here
    before = allocator._baseline[0] = allocator._resident_bytes()
    allocator._last_trim[0] = time.monotonic()
    blocks = [np.ones(4 * MiB // 8) for _ in range(48)]  # 192 MiB in 4 MiB blocks: heap, not mmap
    del blocks
    grown = allocator._resident_bytes()
    assert grown - before > 128 * MiB  # the freed blocks stayed resident: the point of the tuning
    assert not allocator.bound_freed_memory(limit=512 * MiB)  # under the limit: kept for reuse
    assert not allocator.bound_freed_memory(limit=64 * MiB, every=3600)  # too soon after the last trim
    assert allocator.bound_freed_memory(limit=64 * MiB)
    assert allocator._resident_bytes() < grown - 128 * MiB
    assert not allocator.bound_freed_memory(limit=64 * MiB)  # measured from the last trim now
