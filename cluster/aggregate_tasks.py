"""Aggregate a store's parts as Ray tasks: one task per part returns its partial statistics.

The driver merges partials as they finish (`ray.wait`), so it holds at most one partial per task in
flight plus the running total. Tasks read the store themselves: its path must be reachable from
every node (a shared file system or an fsspec URL such as `s3://`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["aggregate_parts_on_ray"]


def aggregate_parts_on_ray(
    store_path: str,
    parts: Sequence[int],
    spec,
    *,
    address: str | None = None,
    storage_options: dict | None = None,
    max_in_flight: int = 64,
    on_part: Callable[[int], None] | None = None,
):
    """Return the merged `PartialStats` of `parts`, each computed by one Ray task (retried twice)."""
    import ray

    from cluster.local import connect
    from jobs.aggregate import part_stats
    from jobs.aggregate_stats import PartialStats

    @ray.remote(max_retries=2)
    def one_part(k: int):
        return k, part_stats(store_path, k, spec, storage_options=storage_options)

    total = PartialStats(spec)  # partials from the object store are read-only: merge into our own arrays
    with connect(address):
        pending: list = []
        todo = list(parts)
        while todo or pending:
            while todo and len(pending) < max_in_flight:
                pending.append(one_part.remote(todo.pop(0)))
            done, pending = ray.wait(pending, num_returns=1)
            k, partial = ray.get(done[0])
            total.merge(partial)
            if on_part is not None:
                on_part(k)
    return total
