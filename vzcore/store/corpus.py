"""Corpus questions over a whole store, streamed part by part (the store is never held in memory).

`token_rows`: every occurrence of a token type at a layer, with the map row it receives (its
sources and their weights), as one table. `top_examples`: the k examples that rank highest on a
per-example statistic of one layer's map. Both read only the done parts, one part at a time; the
token search reads a part's maps only when the part holds the token.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from vzcore.store.errors import StoreError

if TYPE_CHECKING:
    from vzcore.store.reader import Store

__all__ = ["STATISTICS", "token_rows", "top_examples"]


def _mean_diagonal(m: np.ndarray, special: np.ndarray) -> float:
    return float(np.nanmean(np.diagonal(m)))


def _mean_context(m: np.ndarray, special: np.ndarray) -> float:
    return float(np.nanmean(np.nansum(m, -1) - np.diagonal(m)))


def _mean_special(m: np.ndarray, special: np.ndarray) -> float:
    return float(np.nanmean(np.nansum(m[:, special], -1))) if special.any() else 0.0


# Per-example statistics of one `[n, n]` map: the mean over its rows.
STATISTICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "self_mass": _mean_diagonal,  # most self-mixing: what tokens keep
    "context_mass": _mean_context,  # most mixing from context
    "special_mass": _mean_special,  # most mass on special tokens ([CLS], [SEP], BOS, ...)
}


def _layer_index(store: Store, layer: int) -> int:
    from vzcore.api import resolve_layers

    try:
        block = resolve_layers([layer], store.model_num_layers)[0]
    except ValueError as err:
        raise StoreError(str(err)) from None
    if block not in store.layers:
        raise StoreError(f"layer {layer} is not in the store; it holds layers {store.layers}")
    return store.layers.index(block)


def token_rows(store: Store, token: str | int, layer: int, method: str):
    """Return a pandas table of every occurrence of `token` (a raw piece or an id) at `layer`:
    `example_id, position, source_position, source_token, weight`, one row per (occurrence, source)."""
    import pandas as pd

    li = _layer_index(store, layer)
    if method not in store.methods:
        raise StoreError(f"store has no method {method!r}; it holds {store.methods}")
    frames = []
    for part in store.done_parts([method]):
        reader = store.part_reader(part)
        ids_or_tokens = reader.array("token_ids" if isinstance(token, int | np.integer) else "tokens")
        hits = np.flatnonzero(np.asarray([t == token for t in ids_or_tokens]))
        if not len(hits):
            continue  # the part's maps are never read
        holders = set(np.searchsorted(reader.token_offset, hits, side="right") - 1)
        wanted = {int(reader.example_id[k]) for k in holders}
        for block in reader.iter_results([method], ids=wanted):
            for eid, result in block:
                where = [
                    i
                    for i, t in enumerate(result.token_ids if isinstance(token, int | np.integer) else result.tokens)
                    if t == token
                ]
                rows = result.scores[method][li]
                for i in where:
                    frames.append(
                        pd.DataFrame(
                            {
                                "example_id": eid,
                                "position": i,
                                "source_position": np.arange(result.n),
                                "source_token": result.tokens,
                                "weight": rows[i],
                            }
                        )
                    )
    columns = ["example_id", "position", "source_position", "source_token", "weight"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def top_examples(store: Store, statistic: str, method: str, layer: int, k: int = 10):
    """Return the `k` examples with the highest `statistic` (see `STATISTICS`) of `method` at `layer`:
    a pandas table `example_id, value`, highest first; a heap of k, whatever the store's size."""
    import pandas as pd

    if statistic not in STATISTICS:
        raise StoreError(f"unknown statistic {statistic!r}; choose from: {', '.join(STATISTICS)}")
    if method not in store.methods:
        raise StoreError(f"store has no method {method!r}; it holds {store.methods}")
    li, stat = _layer_index(store, layer), STATISTICS[statistic]
    special_ids = np.asarray(store.special_token_ids, dtype=np.int64)
    heap: list[tuple[float, int]] = []
    for batch in store.iter_examples(methods=[method]):
        for eid, result in batch:
            special = np.isin(np.asarray(result.token_ids, dtype=np.int64), special_ids)
            item = (stat(result.scores[method][li], special), -eid)  # ties: the lower id first
            if len(heap) < k:
                heapq.heappush(heap, item)
            else:
                heapq.heappushpop(heap, item)
    best = sorted(heap, reverse=True)
    return pd.DataFrame({"example_id": [-e for _, e in best], "value": [v for v, _ in best]})
