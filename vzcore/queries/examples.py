"""Ask a store about examples: find them by text or token (through its Parquet tables), draw one.

`vz show STORE --example ID` (jobs.cli) is the command-line face of `show_example`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vzcore.maps import layer_position
from vzcore.plot import pair_figure, result_figure
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
    site: str | None = None,
):
    """Return a figure: one labelled heatmap per method of example `example_id` at `layer` (default: last).

    A v5 store (an encoder–decoder's sites): a heatmap per site and method, each site at `layer` of its
    own stack (default: its last stored layer), or `site` alone; `words` needs a square site."""
    if store.info.sites and store.info.view is None:
        return _show_pair(store, example_id, methods, layer, words, site)
    if site not in (None, "self"):
        raise StoreError(f"{store.path} holds one site (self-attention), not {site!r}")
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


def _show_pair(store: Store, example_id: int, methods, layer: int | None, words: bool, site: str | None):
    layouts = {s.name: s for s in store.info.site_layouts}
    if site is not None and site not in layouts:
        raise StoreError(f"the store holds no site {site!r}; it holds {', '.join(layouts)}")
    if site is not None and layouts[site].square:
        return show_example(store.site(site), example_id, methods, layer, words)
    if words:
        raise StoreError("--words groups a square site's tokens: name --site encoder or --site decoder")
    result = store.example(example_id, methods)
    if site is not None:
        result.sites = {site: result.sites[site]}
    chosen: dict[str, int] = {}
    for name in result.sites:
        s = layouts[name]
        try:
            if layer is not None:
                chosen[name] = s.layers[layer_position(layer, s.num_layers, s.layers, f"the {name} site")]
        except ValueError as err:
            raise StoreError(str(err)) from None
    text = store.texts([example_id]).get(example_id)
    title = f"example {example_id} ({'greedy' if result.target_from == 'greedy' else 'forced'} decoding)"
    title += f": {text}" if text else ""
    return pair_figure(result, methods, chosen, title)
