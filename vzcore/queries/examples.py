"""Ask a store about examples: find them by text or token (through its Parquet tables), draw one.

`vz show STORE --example ID` (jobs.cli) is the command-line face of `show_example`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vzcore.maps import layer_position
from vzcore.plot import result_figure
from vzcore.store.errors import StoreError
from vzcore.store.reader import Store

__all__ = ["find_examples", "show_example"]


def find_examples(
    store: Store,
    *,
    text: str | None = None,
    token: str | int | None = None,
    regex: bool = False,
    case: bool = False,
    word: bool = False,
    scored_only: bool = True,
) -> list[int]:
    """Return the ids of examples whose text contains `text` and/or that hold token `token` (string or id).

    `text` matches as a substring, case-insensitively ("cat" finds "sophisticated"), unless
    `word=True` (whole words only), `case=True` (case-sensitive) or `regex=True` (a regular
    expression). Both read the done parts' tables (a v1/v2 store's text search needs its
    `tables/examples.parquet`, written when every part was done; its token search falls back to
    the done parts' arrays before that).
    """
    if text is None and token is None:
        raise ValueError("give text=..., token=... or both")
    ids: set[int] | None = None
    if text is not None:
        ex = store.table("examples", columns=["example_id", "status", "text"]).to_pandas()
        if scored_only:
            ex = ex[ex.status == "scored"]
        pattern = text
        if word:
            import re

            pattern, regex = rf"\b(?:{text if regex else re.escape(text)})\b", True
        hit = ex.text.fillna("").str.contains(pattern, case=case, regex=regex)
        ids = set(ex.example_id[hit].tolist())
    if token is not None:
        column = "token_id" if isinstance(token, int | np.integer) else "token"
        if store.has_tables():
            tok = store.table("tokens", columns=["example_id", column]).to_pandas()
        else:
            import pandas as pd

            tok = pd.concat([store.part_reader(k).tokens_frame() for k in store.done_parts()], ignore_index=True)
        found = set(tok.example_id[tok[column] == token].tolist())
        ids = found if ids is None else ids & found
    return sorted(ids or [])


def show_example(
    store: Store,
    example_id: int,
    methods: Sequence[str] | None = None,
    layer: int | None = None,
    words: bool = False,
):
    """Return a figure: one labelled heatmap per method of example `example_id` at `layer` (default: last)."""

    result = store.example(example_id, methods)
    layers = list(result.layers)
    if layer is None:
        layer = layers[-1]
    else:
        try:
            layer = layers[layer_position(layer, store.model_num_layers, layers, "the store")]
        except ValueError as err:
            raise StoreError(str(err)) from None
    title = f"example {example_id}" + (f": {result.text}" if result.text else "")  # wrapped by result_figure
    return result_figure(result, layers=[layer], words=words, title=title)
