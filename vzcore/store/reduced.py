"""Read a part's maps back dense, whatever form they were stored in (docs/store-layout.md).

v1-v3 parts and dense v4 examples hold every valid entry of the rows they keep (a words example:
of its word map's rows, `vzcore.store.words`); top-k v4 examples
hold CSR rows (`vzcore.store.forms`). Both come back as `[L, n, n]` float32 maps: entries not kept
are 0, rows not held are NaN (as `vzcore.score(targets=...)` leaves them), and each row's kept
mass `[L, n]` (the sum of what is stored: a dense row's sum, a top-k row's stored mass; NaN for a
row not held). The statistics and the queries thus see one layout, the dense one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vzcore.store.errors import StoreError
from vzcore.store.forms import FORM_NAMES, FORM_TOP_K, held_positions, top_k_dense
from vzcore.store.layout import SCORES_GROUP, TOP_K_GROUP, packed_size, unpack_maps

__all__ = ["DenseMaps", "PartRows", "check_reduced", "read_dense"]

DenseMaps = tuple[np.ndarray, np.ndarray]  # `([L, n, n] float32 maps, [L, n] float32 kept mass)`
TOP_K_ARRAYS = ("offset", "count", "mass", "source", "value")


class PartRows:
    """Which rows each example of a part holds, and in which form: v4's `form`, `row_offset`, `rows`
    (a v1-v3 part: every row, dense)."""

    def __init__(self, reader: Any, reduced: bool) -> None:
        m = len(reader.length)
        self.reduced = reduced
        # Each example's maps are `[L, n, n]` over its tokens, or over its words in a words part.
        self.length = reader.length.astype(np.int64) if reader.words is None else reader.words.size
        if reduced:
            self.form = reader.array("form").astype(np.int8)
            self.row_offset = reader.array("row_offset").astype(np.int64)
            self.rows = reader.array("rows").astype(np.int64)
            unknown = sorted(set(np.unique(self.form).tolist()) - set(FORM_NAMES))
            if unknown:
                raise StoreError(
                    f"part {reader.part}: unknown map form(s) {unknown}; this vzcore reads "
                    f"{', '.join(f'{c} ({n})' for c, n in FORM_NAMES.items())}: read it with the version that wrote it"
                )
            if len(self.form) != m or len(self.row_offset) != m + 1 or self.row_offset[-1] != len(self.rows):
                raise StoreError(f"part {reader.part}: its form and row arrays do not match its {m} examples")
        else:  # every row, dense: nothing to read, and nothing per example to build (v3 reads stay as fast)
            self.form = np.zeros(m, dtype=np.int8)
            self.top_k_row_offset = np.zeros(m + 1, dtype=np.int64)
            self.dense_offset = np.asarray(reader.value_offset, dtype=np.int64)
            return
        num_maps = reader.info.num_maps
        top_k_rows = np.where(self.form == FORM_TOP_K, num_maps * np.diff(self.row_offset), 0)
        self.top_k_row_offset = np.concatenate([[0], np.cumsum(top_k_rows)]).astype(np.int64)  # into count, mass
        dense = [packed_size(int(n), int(n), num_maps, reader.info.causal) for n in self.length]
        self.dense_offset = np.concatenate([[0], np.cumsum(dense)]).astype(np.int64)  # values once made dense

    def held(self, k: int) -> np.ndarray:
        """Return the rows example `k` holds, ascending."""
        if not self.reduced:
            return np.arange(self.length[k])
        return self.rows[self.row_offset[k] : self.row_offset[k + 1]]


def read_dense(reader: Any, a: int, b: int, methods: Sequence[str], span: str) -> dict[str, list[DenseMaps | None]]:
    """Return, per method, examples `a..b-1` of the part dense (None where not scored), reading one
    slice per array."""
    rows: PartRows = reader.rows
    info = reader.info
    num_maps, causal = info.num_maps, info.causal
    v0, v1 = int(reader.value_offset[a]), int(reader.value_offset[b])
    out: dict[str, list[DenseMaps | None]] = {}
    for meth in methods:
        flat = reader.array(f"{SCORES_GROUP}/{meth}", slice(v0, v1), span)
        top = _top_k_slices(reader, meth, a, b, span) if (rows.form[a:b] == FORM_TOP_K).any() else None
        maps: list[DenseMaps | None] = []
        for k in range(a, b):
            n = int(rows.length[k])
            if not n:
                maps.append(None)
                continue
            held = rows.held(k)
            if rows.form[k] != FORM_TOP_K:  # dense over its tokens, or over its words
                values = flat[int(reader.value_offset[k]) - v0 : int(reader.value_offset[k + 1]) - v0]
                if not rows.reduced:
                    x = unpack_maps(values, n, n, num_maps, causal).astype(np.float32)
                else:
                    x = np.full((num_maps, n, n), np.nan, dtype=np.float32)
                    x[:, held] = 0.0  # a held row's invalid entries (causal: j > i) are 0 by definition
                    x.reshape(num_maps, -1)[:, held_positions(held, n, causal)] = values.reshape(num_maps, -1)
                maps.append((x, x.sum(-1)))  # a row not held (NaN) has a NaN mass
            else:
                assert top is not None
                maps.append(top.example(k, held, n, num_maps))
        out[meth] = maps
    return out


class _TopKSlices:
    """One method's top-k arrays for a run of examples, read with one slice each."""

    def __init__(self, reader: Any, meth: str, a: int, b: int, span: str) -> None:
        base = f"{TOP_K_GROUP}/{meth}"
        self.offset = reader.array(f"{base}/offset", slice(a, b + 1), span).astype(np.int64)
        rows: PartRows = reader.rows
        self.r0, r1 = int(rows.top_k_row_offset[a]), int(rows.top_k_row_offset[b])
        self.count = reader.array(f"{base}/count", slice(self.r0, r1), span)
        self.mass = reader.array(f"{base}/mass", slice(self.r0, r1), span)
        self.e0 = int(self.offset[0])
        self.source = reader.array(f"{base}/source", slice(self.e0, int(self.offset[-1])), span)
        self.value = reader.array(f"{base}/value", slice(self.e0, int(self.offset[-1])), span)
        self.a, self.rows = a, rows

    def example(self, k: int, held: np.ndarray, n: int, num_maps: int) -> DenseMaps:
        r = slice(int(self.rows.top_k_row_offset[k]) - self.r0, int(self.rows.top_k_row_offset[k + 1]) - self.r0)
        e = slice(int(self.offset[k - self.a]) - self.e0, int(self.offset[k - self.a + 1]) - self.e0)
        count, mass = self.count[r], self.mass[r]
        if count.sum() != e.stop - e.start:
            stored = e.stop - e.start
            raise StoreError(f"top-k rows of {n} tokens: counts sum to {count.sum()}, {stored} entries stored")
        x = top_k_dense(count, self.source[e], self.value[e], mass, held, n, num_maps)
        full_mass = np.full((num_maps, n), np.nan, dtype=np.float32)
        full_mass[:, held] = mass.reshape(num_maps, len(held))
        return x, full_mass


def _top_k_slices(reader: Any, meth: str, a: int, b: int, span: str) -> _TopKSlices:
    return _TopKSlices(reader, meth, a, b, span)


def check_reduced(reader: Any, methods: Sequence[str], k: int) -> int:
    """Check a v4 part's rows and top-k arrays against its examples (`vz verify`); return how many
    dense values `scores/{method}` must hold. A `StoreError` says what disagrees."""
    rows: PartRows = reader.rows
    info, part = reader.info, reader.part
    num_maps, causal = info.num_maps, info.causal
    want = 0
    for e, n in enumerate(rows.length.tolist()):
        held = rows.held(e)
        if len(held) and (held[0] < 0 or held[-1] >= n or (np.diff(held) <= 0).any()):
            units = "words" if info.form.words else "tokens"
            raise StoreError(f"part {part}: example {int(reader.example_id[e])} holds rows outside its {n} {units}")
        if rows.form[e] != FORM_TOP_K:
            want += num_maps * len(held_positions(held, n, causal))
    for meth in methods:
        if not (rows.form == FORM_TOP_K).any():
            continue
        base = f"{TOP_K_GROUP}/{meth}"
        arr = {name: reader.array(f"{base}/{name}") for name in TOP_K_ARRAYS}
        offset, count = arr["offset"].astype(np.int64), arr["count"].astype(np.int64)
        entries = len(arr["value"])
        if (
            len(offset) != len(rows.length) + 1
            or len(count) != rows.top_k_row_offset[-1]
            or len(arr["mass"]) != len(count)
            or offset[-1] != entries
            or len(arr["source"]) != entries
            or count.sum() != entries
            or (count < 0).any()
            or (k and (count > k).any())
        ):
            raise StoreError(f"part {part}: {meth}'s top-k arrays disagree with each other or with its rows")
        row_of = np.repeat(np.arange(len(count)), count)
        # Each entry's example and its row's position, from the per-example row layout.
        owner = np.searchsorted(rows.top_k_row_offset, row_of, side="right") - 1
        n_of = rows.length[owner]
        local = row_of - rows.top_k_row_offset[owner]
        held_count = np.diff(rows.row_offset)[owner]
        target = rows.rows[rows.row_offset[owner] + local % np.maximum(held_count, 1)]
        source = arr["source"].astype(np.int64)
        if (source < 0).any() or (source >= n_of).any() or (causal and (source > target).any()):
            raise StoreError(f"part {part}: {meth} keeps sources outside their rows")
        starts = np.concatenate([[0], np.cumsum(count)])[:-1]
        ascending = np.diff(source) > 0
        new_row = starts[(starts > 0) & (starts < entries)]
        ascending[new_row - 1] = True  # a new row may start lower
        if entries > 1 and not ascending.all():
            raise StoreError(f"part {part}: {meth} keeps a row's sources out of order")
        sums = np.bincount(row_of, weights=arr["value"].astype(np.float64), minlength=len(count))
        mass = arr["mass"].astype(np.float64)
        ok = np.isnan(mass) & (count == 0) | (np.abs(sums - mass) <= 1e-5 * np.maximum(1.0, np.abs(mass)))
        if not ok.all():
            raise StoreError(f"part {part}: {meth}'s kept masses are not the sums of its kept values")
    return want
