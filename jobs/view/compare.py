"""The compare page's data: two stores of the same texts (pre-trained vs fine-tuned, two models).

Their per-layer curves come from each store's own overview (`ViewData.overview`, with its
aggregate); the examples that changed most are ranked by the mean, over an example's rows, of the
total variation distance between the two stores' rows at one layer (half the L1 distance of two
rows that each sum to 1: 0 for the same row, 1 for rows with no source in common). Only examples
whose tokens are the same in both stores are compared; the rest are counted, never guessed at.
"""

from __future__ import annotations

import heapq

import numpy as np

from jobs.view.data import MAX_PAGE, ViewData, ViewError, preview
from vzcore.store.errors import StoreError
from vzcore.store.reader import Store

__all__ = ["changed_most", "compare", "row_change"]


def row_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of the total variation distance between `a` and `b` (`[n, n]`; NaN rows left out)."""
    tv = 0.5 * np.abs(a.astype(np.float64) - b.astype(np.float64)).sum(-1)
    return float(np.nanmean(tv)) if np.isfinite(tv).any() else float("nan")


def changed_most(a: Store, b: Store, method: str, layer: int, k: int = 20, scan: int = 2000) -> dict:
    """The `k` examples, among the first `scan` scored in both stores, whose rows at `layer` moved most."""
    for store, name in ((a, "this store"), (b, "the other store")):
        if method not in store.methods or int(layer) not in store.layers:
            raise ViewError(f"{name} has no method {method!r} at layer {layer}")
    k, scan = max(1, min(int(k), MAX_PAGE)), max(1, int(scan))
    ids = []
    for part in a.done_parts([method]):
        info = a.parts[part]
        ids += range(info.start, min(info.stop, info.start + scan - len(ids)))
        if len(ids) >= scan:
            break
    try:
        theirs = {eid: r for batch in b.iter_examples(64, [method], ids=ids) for eid, r in batch}
        heap: list[tuple[float, int, int]] = []
        compared = differ = 0
        for batch in a.iter_examples(64, [method], ids=ids):
            for eid, r in batch:
                other = theirs.get(eid)
                if other is None or other.token_ids != r.token_ids:
                    differ += other is not None
                    continue
                compared += 1
                change = row_change(
                    r.scores[method][r.layers.index(layer)], other.scores[method][other.layers.index(layer)]
                )
                if np.isfinite(change):
                    heapq.heappush(heap, (change, -eid, r.n))
                    if len(heap) > k:
                        heapq.heappop(heap)
    except StoreError as err:
        raise ViewError(str(err)) from err
    top = sorted(heap, reverse=True)
    texts = a.texts([-e for _, e, _ in top])
    rows = [{"example_id": -e, "value": c, "length": n, "text": preview(texts.get(-e))} for c, e, n in top]
    return {"method": method, "layer": int(layer), "compared": compared, "different_tokens": differ, "rows": rows}


def compare(data: ViewData, method: str, layer: int, k: int = 20, scan: int = 2000) -> dict:
    """The examples that changed most between the store of `data` and the one it is compared with."""
    if data.other is None:
        raise ViewError("no store to compare with: `vz view STORE --compare OTHER`", 404)
    return changed_most(data.store, data.other.store, method, layer, k, scan)
