"""Part completion: each part's complete mark, the completion index, and what a plan still lacks.

A part's own `complete` attribute (the methods whose scores it holds whole) is the truth: its
writer sets it last, when everything else of the part is written (`vzcore.store.writer`). The
completion index `done` `[parts]` says the same for every part at once (bit i: root method i), so
a reader knows what is usable without opening any part: a few reads whatever the store's size.
Only the scoring driver writes the index, after a part's writer marked the part complete; a run
rebuilds it from the parts first (`write_done`), so a driver killed between the two leaves an index
that only under-reports. `rebuild_index` and `vz verify --repair` rewrite it from the parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vzcore.store.layout import DONE_ARRAY, part_path
from vzcore.store.location import Location
from vzcore.store.root import INDEX_CHUNK, RootAttrs

__all__ = [
    "PartInfo",
    "complete_methods",
    "mark_done",
    "part_state",
    "read_done",
    "read_parts",
    "rebuild_index",
    "remaining",
    "set_complete",
    "store_parts",
    "unmark",
    "write_done",
]


@dataclass(frozen=True)
class PartInfo:
    """One planned part: its id range, the methods it holds complete, and why it is unusable (if so)."""

    part: int
    start: int
    stop: int
    complete: tuple[str, ...]  # methods whose scores are fully written
    problem: str | None = None  # None when the part can be read
    data_hash: str | None = None  # the hash of the rows it was scored from, when read from the part itself

    def done_for(self, methods: Sequence[str]) -> bool:
        return self.problem is None and all(m in self.complete for m in methods)

    @property
    def usable(self) -> tuple[str, ...]:
        """The methods whose maps can be read: those complete, none while the part has a problem."""
        return () if self.problem else self.complete


# ---- a part's own mark ------------------------------------------------------------------------
def complete_methods(attrs: dict) -> list[str]:
    """Return the methods a part group's attrs mark complete (`complete: [methods]`)."""
    done = attrs.get("complete", [])
    return list(done) if isinstance(done, list | tuple) else []


def set_complete(group: Any, methods) -> None:
    """Mark `methods` (and no other) complete in a part group: its writer's last word."""
    group.attrs["complete"] = sorted(set(methods))


def unmark(group: Any) -> None:
    """Mark a part as holding nothing: no method complete, its example arrays not reusable, so that
    the next scoring run rewrites it whole (`vz verify --repair`)."""
    group.attrs.update({"complete": [], "base_complete": False})


def part_state(root: Any, part: int) -> dict | None:
    """Return a part group's attrs (`start`, `stop`, `complete`, ...), or None if it does not exist."""
    try:
        return dict(root[part_path(part)].attrs)
    except (KeyError, FileNotFoundError):
        return None


def _part_info(planned: dict, attrs: dict | None, methods: Sequence[str] | None) -> PartInfo:
    k, start, stop = int(planned["part"]), int(planned["start"]), int(planned["stop"])
    if attrs is None:
        return PartInfo(k, start, stop, (), "not written")
    done = tuple(m for m in complete_methods(attrs) if methods is None or m in methods)
    if (attrs.get("start"), attrs.get("stop")) != (start, stop):
        got = f"[{attrs.get('start')}, {attrs.get('stop')})"
        problem = f"holds ids {got} but the plan says [{start}, {stop}): left from a different run or plan"
        return PartInfo(k, start, stop, done, problem)
    data_hash = attrs.get("data_hash") or None
    if not done:
        return PartInfo(k, start, stop, done, "partly written (no method marked complete)", data_hash)
    return PartInfo(k, start, stop, done, None, data_hash)


def read_parts(root: Any, plan: Sequence[dict], methods: Sequence[str] | None = None) -> list[PartInfo]:
    """Return each part of `plan` as its own attributes say (one read per part; `root` None: a store
    not written yet), counting only `methods` complete (None: any)."""
    return [_part_info(p, None if root is None else part_state(root, p["part"]), methods) for p in plan]


def store_parts(root: Any, info: RootAttrs, *, check_parts: bool = False) -> list[PartInfo]:
    """Return every planned part of a store: from its completion index (a few reads), or from the
    parts' own attributes with `check_parts` or when the store has no index (v1, v2)."""
    masks = None if check_parts else read_done(root, len(info.plan))
    if masks is None:
        return read_parts(root, info.plan, info.methods)
    parts = []
    for planned, mask in zip(info.plan, masks, strict=True):
        done = info.methods_of(int(mask))
        parts.append(PartInfo(planned["part"], planned["start"], planned["stop"], done, None if done else "not done"))
    return parts


def remaining(parts: Sequence[PartInfo], methods: Sequence[str]) -> list[tuple[PartInfo, tuple[str, ...]]]:
    """Return what a plan still lacks: each part missing some of `methods`, with the methods it misses."""
    todo = []
    for p in parts:
        missing = tuple(m for m in methods if m not in p.usable)
        if missing:
            todo.append((p, missing))
    return todo


# ---- the index --------------------------------------------------------------------------------
def write_done(group: Any, masks) -> None:
    """Write the completion index (one int64 mask per planned part), replacing what was there."""
    from zarr.codecs import ZstdCodec

    masks = np.asarray(masks, dtype=np.int64).reshape(-1)
    arr = group.create_array(
        DONE_ARRAY,
        shape=masks.shape,
        dtype="int64",
        chunks=(max(1, min(len(masks), INDEX_CHUNK)),),
        fill_value=0,
        overwrite=True,
        compressors=ZstdCodec(level=3),
    )
    if len(masks):
        arr[:] = masks


def mark_done(group: Any, part: int, mask: int, exact: bool = False) -> None:
    """Set `mask`'s bits for `part` in the index (read-modify-write of one chunk: the driver's alone);
    `exact`: make `mask` the part's whole entry (the methods a part was just written holding)."""
    arr = group[DONE_ARRAY]
    arr[part] = int(mask) if exact else int(arr[part]) | int(mask)


def read_done(group: Any, parts: int) -> np.ndarray | None:
    """Return the completion index as `[parts]` int64 masks, or None when the store has none (v1, v2).

    An index shorter than the plan (a driver stopped between writing the plan and the index)
    reads as not done for the parts it lacks."""
    try:
        arr = group[DONE_ARRAY]
    except KeyError:
        return None
    masks = np.zeros(parts, dtype=np.int64)
    got = np.asarray(arr[: min(parts, arr.shape[0])], dtype=np.int64)
    masks[: len(got)] = got
    return masks


def rebuild_index(path_or_url: str, storage_options: dict | None = None) -> int:
    """Rewrite the completion index from every part's own attributes (what a scoring run does
    before it dispatches); return how many parts it marks done. The caller must be the only writer."""
    location = Location(str(path_or_url), dict(storage_options or {}))
    root = location.open_group(mode="r+")
    info = RootAttrs.read(root, location.path)
    masks = [info.mask_of(p.usable) for p in store_parts(root, info, check_parts=True)]
    write_done(root, masks)
    return sum(1 for m in masks if m)
