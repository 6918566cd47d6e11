"""Check that every part a store claims complete reads back whole, and unmark the broken ones.

A damaged chunk (a truncated file, a bad copy) is found by decompressing every array of every
complete part; a part whose arrays disagree with each other (offsets against lengths) or whose
texts in `tables/` no longer hash to the part's `data_hash` is broken too; so is a reduced (v4)
part whose rows or top-k arrays disagree with its examples (`vzcore.store.reduced.check_reduced`), or
whose words disagree with its tokens (`vzcore.store.words.check_words`).
`repair=True` unmarks a broken part (no method complete, its example arrays not reusable), so that the next scoring run
rewrites exactly those parts, and rewrites the completion index from the parts (which it also
checks: an index that disagrees with a part is reported). The caller must be the store's only
writer (the job's lease).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vzcore.store.completion import read_done, unmark, write_done
from vzcore.store.errors import StoreError
from vzcore.store.layout import EXAMPLE_ARRAYS, SCORES_GROUP, TOKEN_ARRAYS, packed_size, part_path, texts_fingerprint
from vzcore.store.reader import Store, open_part, open_store
from vzcore.store.reduced import check_reduced
from vzcore.store.sites import PAIR_EXAMPLE_ARRAYS, TARGET_TOKEN_ARRAYS, site_sizes
from vzcore.store.words import check_words

__all__ = ["BrokenPart", "verify_store"]


@dataclass(frozen=True)
class BrokenPart:
    part: int
    problem: str
    index_only: bool = False  # the part reads back whole; only the completion index is wrong about it


def _check_part(store: Store, part: int, methods: list[str], texts: dict[int, str | None] | None) -> None:
    reader = open_part(store.location, part, store.info)
    for name in (*EXAMPLE_ARRAYS, *TOKEN_ARRAYS):
        reader.array(name)
    n = reader.length.astype(np.int64)
    if reader.token_offset[-1] != n.sum() or len(reader.token_offset) != len(n) + 1:
        raise StoreError(f"part {part}: token offsets do not match the lengths")
    if store.info.sites:  # v5: two streams, every site's values per example
        want = _check_pairs(reader, store)
    elif store.info.reduced:
        if reader.words is not None:
            check_words(reader)
        want = check_reduced(reader, methods, store.info.form.k if store.info.form.top_k else 0)
    else:
        want = sum(packed_size(int(k), int(k), store.info.num_maps, store.causal) for k in n)
    for method in methods:
        values = reader.array(f"{SCORES_GROUP}/{method}")
        if len(values) != want or reader.value_offset[-1] != want:
            raise StoreError(f"part {part}: {method} holds {len(values)} values, its examples need {want}")
    data_hash = reader.group.attrs.get("data_hash")
    rows = [texts.get(int(i)) for i in reader.example_id] if texts is not None else []
    # A v5 part's hash covers (source, target) rows, of which the tables keep texts only: not checked here.
    checkable = data_hash and rows and not store.info.sites and all(isinstance(t, str) for t in rows)
    if checkable and texts_fingerprint(rows) != data_hash:
        raise StoreError(f"part {part}: its texts in tables/ are not the rows its maps were scored from")


def _check_pairs(reader, store: Store) -> int:
    """Check a v5 part's target stream against its lengths; return how many values each method must hold."""
    for name in (*PAIR_EXAMPLE_ARRAYS, *TARGET_TOKEN_ARRAYS):
        reader.array(name)
    n_src, n_tgt = reader.length.astype(np.int64), reader.array("target_length").astype(np.int64)
    offset = reader.array("target_offset")
    if len(offset) != len(n_tgt) + 1 or offset[-1] != n_tgt.sum() or len(reader.array("target_ids")) != n_tgt.sum():
        raise StoreError(f"part {reader.part}: target offsets do not match the target lengths")
    layouts = store.info.site_layouts
    return sum(sum(site_sizes(layouts, int(a), int(b))) for a, b in zip(n_src, n_tgt, strict=True))


def verify_store(
    path_or_url: str,
    storage_options: dict | None = None,
    *,
    repair: bool = False,
    on_part: Callable[[int], None] | None = None,
) -> list[BrokenPart]:
    """Read every part the store at `path_or_url` claims complete; return the broken ones (unmarked if `repair`)."""
    store = open_store(path_or_url, storage_options, check_parts=True)  # the parts' own attributes: the truth
    texts = None
    if store.has_tables():
        table = store.table("examples", columns=["example_id", "text"])
        texts = dict(zip(table.column("example_id").to_pylist(), table.column("text").to_pylist(), strict=True))
    broken = []
    for info in store.parts:
        if info.problem is not None or not info.complete:
            continue  # not claimed complete: the next run writes it anyway
        try:
            _check_part(store, info.part, list(info.complete), texts)
        except Exception as err:  # any failure to read back is a broken part
            broken.append(
                BrokenPart(info.part, str(err) if isinstance(err, StoreError) else f"{type(err).__name__}: {err}")
            )
        if on_part is not None:
            on_part(info.part)
    unmarked = {b.part for b in broken}
    truth = np.asarray([0 if p.part in unmarked else store.info.mask_of(p.usable) for p in store.parts], np.int64)
    root = store.location.open_group(mode="r+" if repair else "r")
    index = read_done(root, len(store.parts))
    if index is not None:
        for k in np.flatnonzero(index != truth):
            said, holds = store.info.methods_of(index[k]), store.info.methods_of(truth[k])
            if k not in unmarked:
                problem = f"the completion index says done for {list(said)}, the part for {list(holds)}"
                broken.append(BrokenPart(int(k), problem, index_only=True))
    if repair:
        for b in broken:
            if not b.index_only:
                unmark(root[part_path(b.part)])
        if index is not None or store.layout >= 3:
            write_done(root, truth)
    return sorted(broken, key=lambda b: b.part)
