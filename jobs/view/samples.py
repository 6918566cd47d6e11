"""Samples of examples for a per-example statistic (the examples page): top-k and deciles.

Top-k shows the extremes over the whole store: from the aggregate's `top_examples.parquet` when it
answers (`aggregate_top`), else by streaming every map of the method (`vzcore.queries.top_examples`,
`ViewData.top`). A stratified sample
shows the typical too: the statistic of the first `scan` scored examples, cut at its deciles, and
`per` examples drawn (seeded) from each tenth. The statistic is the one `top_examples` ranks by: a
mean over an example's rows that count (`vzcore.statistics.rows.example_masses`).
"""

from __future__ import annotations

import numpy as np

from jobs.view.data import ViewData, ViewError, preview
from vzcore.statistics.rows import example_masses
from vzcore.store.errors import StoreError
from vzcore.store.reader import Store

__all__ = ["STATISTICS", "aggregate_top", "decile_sample", "static_top", "top_sample"]

STATISTICS = {"self_mass": 0, "context_mass": 1, "special_mass": 2}  # those that need no token or word


def decile_sample(
    store: Store, statistic: str, method: str, layer: int, per: int = 2, scan: int = 5000, seed: int = 0
) -> dict:
    """Return `per` examples from each decile of `statistic` over the first `scan` scored examples."""
    if statistic not in STATISTICS or method not in store.methods or int(layer) not in store.layers:
        raise ViewError(
            f"statistic is one of {', '.join(STATISTICS)}; method one of {', '.join(store.methods)};"
            f" layer one of {store.layers}"
        )
    li, column = store.layers.index(int(layer)), STATISTICS[statistic]
    special = np.asarray(store.special_token_ids, dtype=np.int64)
    ids: list[int] = []
    for part in store.done_parts([method]):
        info = store.parts[part]
        ids += range(info.start, min(info.stop, info.start + scan - len(ids)))
        if len(ids) >= scan:
            break
    values: dict[int, tuple[float, int]] = {}
    try:
        for batch in store.iter_examples(256, [method], ids=ids):
            for eid, r in batch:
                mask = np.isin(np.asarray(r.token_ids, dtype=np.int64), special)
                v = example_masses(r.scores[method][li], store.causal, mask)
                if v is not None:
                    values[eid] = (float(v[column]), r.n)
    except StoreError as err:
        raise ViewError(str(err)) from err
    if not values:
        return {"statistic": statistic, "method": method, "layer": int(layer), "scanned": 0, "rows": []}
    eids = np.fromiter(values, dtype=np.int64)
    v = np.asarray([values[e][0] for e in eids])
    decile = np.minimum((np.argsort(np.argsort(v, kind="stable"), kind="stable") * 10) // len(v), 9)
    rng = np.random.default_rng(seed)
    chosen = []
    for d in range(10):
        members = np.flatnonzero(decile == d)
        picked = rng.choice(members, size=min(per, len(members)), replace=False) if len(members) else []
        chosen += sorted(((d, int(i)) for i in picked), key=lambda t: v[t[1]])
    texts = store.texts([int(eids[i]) for _, i in chosen])
    rows = [
        {
            "decile": d + 1,
            "example_id": int(eids[i]),
            "value": float(v[i]),
            "length": values[int(eids[i])][1],
            "text": preview(texts.get(int(eids[i]))),
        }
        for d, i in chosen
    ]
    return {"statistic": statistic, "method": method, "layer": int(layer), "scanned": len(v), "rows": rows}


def aggregate_top(
    data: ViewData, statistic: str, method: str, layer: int, k: int, with_text: bool = True
) -> dict | None:
    """Return the `k` highest examples from the aggregate's `top_examples.parquet` (no map read), or
    None when it cannot answer: no aggregate or no such table, fewer kept than `k` of a larger
    corpus, or an aggregate of another store or of fewer parts than the store now has done.
    `with_text=False` leaves the texts out (None): a caller asking many questions reads them once."""
    table = data.top_table()
    if table is None or statistic not in STATISTICS:
        return None
    summary, frame = table
    store = data.store
    if (
        summary.get("source", {}).get("data_identity") != store.info.data_identity
        or summary.get("identity", {}).get(method) != store.identity.get(method)
        or not _covers(summary, [p for p in store.parts if p.done_for([method])])
    ):
        return None
    rows = frame[(frame["statistic"] == statistic) & (frame["method"] == method) & (frame["layer"] == int(layer))]
    kept = int(summary.get("config", {}).get("top_examples", 0))
    if k > len(rows) and len(rows) >= kept:  # the table holds the best `kept`, not every example
        return None
    rows = rows.sort_values("rank").head(k)
    texts = store.texts(rows["example_id"].tolist()) if with_text else {}
    out = [
        {"example_id": int(e), "value": float(v), "length": int(n), "text": preview(texts.get(int(e)))}
        for e, v, n in zip(rows["example_id"], rows["value"], rows["length"], strict=True)
    ]
    return {"statistic": statistic, "method": method, "layer": int(layer), "rows": out, "source": "table"}


def _covers(summary: dict, done: list) -> bool:
    """Whether the aggregate read every done part as it is now: the same parts with the same example ids
    (a later `--limit` can extend the last part under its index). Aggregates written before they kept
    each part's ids are checked by part index only."""
    ranges = summary.get("part_ranges")
    if ranges is None:
        return {p.part for p in done} <= set(summary.get("parts_used", []))
    return all(ranges.get(str(p.part)) == [p.start, p.stop] for p in done)


def top_sample(data: ViewData, statistic: str, method: str, layer: int, k: int = 20) -> dict:
    """The `k` highest examples: from the aggregate's table when it answers, else streamed (and said so)."""
    if k < 1:
        raise ViewError(f"k must be 1 or more, got {k}")
    found = aggregate_top(data, statistic, method, layer, k)
    if found is not None:
        return found
    streamed = data.top(statistic, method, layer, k)
    return streamed | {"source": "stream", "parts": len(data.store.done_parts([method]))}


def static_top(data: ViewData, k: int) -> dict[str, list[dict]] | None:
    """The `k` highest examples of every statistic, method and layer from the aggregate's table
    (`"statistic/method/layer"` -> rows), for a static site; None unless the table answers them all."""
    out: dict[str, list[dict]] = {}
    for statistic in STATISTICS:
        for method in data.store.methods:
            for layer in data.store.layers:
                found = aggregate_top(data, statistic, method, layer, k, with_text=False)
                if found is None:
                    return None
                out[f"{statistic}/{method}/{layer}"] = found["rows"]
    texts = data.store.texts(sorted({r["example_id"] for rows in out.values() for r in rows}))
    for rows in out.values():
        for r in rows:
            r["text"] = preview(texts.get(r["example_id"]))
    return out
