"""Corpus queries on an encoder–decoder store's cross site: a target token's or word's row over the source.

A cross map's rows are decoder tokens and its columns source positions (tokens, or audio frames), so
a row query finds the token or word among each example's *target* tokens (`vzcore.queries.corpus`'s
token and word matching, on the target stream) and returns its row over the source positions: a
word's row is the mean of its tokens' rows (as `word_rows` takes a word's row). Streamed part by part;
a part's maps are read only when it holds a hit.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from vzcore.maps import layer_position
from vzcore.queries.corpus import _query
from vzcore.store.errors import StoreError
from vzcore.store.reader import Store
from vzcore.store.sites import STREAM_ARRAYS
from vzcore.tokens import guess_scheme, sequence_texts, span_text

__all__ = ["CROSS_ROW_COLUMNS", "cross_rows"]

CROSS_ROW_COLUMNS = ("example_id", "position", "target", "num_tokens", "source_position", "source_token", "weight")


class _TargetStream:
    """A v5 part reader's target stream under the names the token and word queries read."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.example_id = reader.example_id
        self.token_offset = reader.array("target_offset")

    def array(self, name: str) -> np.ndarray:
        return self.reader.array(STREAM_ARRAYS["target"][name])


def cross_rows(
    store: Store,
    layer: int,
    method: str,
    *,
    token: str | int | None = None,
    word: str | None = None,
    ignore_case: bool = False,
):
    """Return a pandas table of every occurrence of a target `token` (a raw piece or an id) or `word` at
    block `layer` of the cross site: its row over the source positions (`CROSS_ROW_COLUMNS`)."""
    layouts = {s.name: s for s in store.info.site_layouts}
    if "cross" not in layouts or store.info.view is not None:
        raise StoreError(f"{store.path} holds no cross site (its sites: {', '.join(store.sites)})")
    site = layouts["cross"]
    try:
        li = layer_position(layer, site.num_layers, site.layers, "the cross site")
    except ValueError as err:
        raise StoreError(str(err)) from None
    if method not in store.methods:
        raise StoreError(f"store has no method {method!r}; it holds {store.methods}")
    query = _query(token, word, ignore_case)
    chunks: dict[str, list] = {c: [] for c in CROSS_ROW_COLUMNS}
    for part in store.done_parts([method]):
        reader = store.part_reader(part)
        found = query.find(_TargetStream(reader))  # type: ignore[arg-type]
        if not found:
            continue
        for block in reader.iter_results([method], ids=set(found)):
            for eid, result in block:
                rows = result.sites["cross"].scores[method][li]  # `[n_tgt, n_src]`
                pieces = list(result.target_tokens)
                sources = np.asarray(result.source_tokens, dtype=object)
                for occ in found[eid]:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)  # an unscored row stays NaN
                        row = np.nanmean(rows[occ.positions], axis=0)
                    label = (
                        sequence_texts(pieces)[occ.positions[0]]
                        if len(occ.positions) == 1
                        else span_text([pieces[i] for i in occ.positions], guess_scheme(pieces))
                    )
                    width = len(row)
                    for c, v in (("example_id", eid), ("position", int(occ.positions[0])),
                                 ("num_tokens", len(occ.positions))):  # fmt: skip
                        chunks[c].append(np.full(width, v))
                    chunks["target"].append(np.full(width, label, dtype=object))
                    chunks["source_position"].append(np.arange(width))
                    chunks["source_token"].append(sources)
                    chunks["weight"].append(row)
    return _table(chunks)


def _table(chunks: dict[str, list]):
    import pandas as pd

    types = {"example_id": "int64", "target": "object", "source_token": "object", "weight": "float32"}
    return pd.DataFrame(
        {
            c: pd.Series(np.concatenate(chunks[c]) if chunks[c] else [], dtype=types.get(c, "int32"))
            for c in CROSS_ROW_COLUMNS
        }
    )
