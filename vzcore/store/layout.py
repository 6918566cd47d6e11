"""The store layout contract (v3; v4 and v5 add to it: see docs/store-layout.md): names, paths and the map packing.

Maps are packed as `vzcore.maps` defines them (`[layers, targets, sources]`, valid entries only);
a self-attention map is `[layers, n, n]` over the example's `n` tokens.

Pure numpy; no zarr here, so readers and writers share one definition of where things live.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from vzcore.maps import map_entries, valid_entries

__all__ = [
    "DONE_ARRAY",
    "EXAMPLE_ARRAYS",
    "LAYOUT_VERSION",
    "LEASE_FILE",
    "PARTS_GROUP",
    "PLAN_ARRAY",
    "READABLE_LAYOUTS",
    "REDUCED_ARRAYS",
    "REDUCED_LAYOUT",
    "SCORES_GROUP",
    "SITES_LAYOUT",
    "STATUS_FAILED",
    "STATUS_NAMES",
    "STATUS_SCORED",
    "STATUS_SKIPPED",
    "TABLES_DIR",
    "TARGET_CHUNK_BYTES",
    "TOKEN_ARRAYS",
    "TOP_K_GROUP",
    "WRITE_PROBE",
    "pack_maps",
    "packed_positions",
    "packed_size",
    "part_path",
    "score_path",
    "table_path",
    "texts_fingerprint",
    "unpack_maps",
]

# v3: the completion index `done`, sharded part arrays, a Parquet file per part under `tables/`.
# v2 named the model's layer count `model_num_layers` (v1: `num_layers`) and moved the plan to an array.
# v4: reduced forms (top-k rows, targeted rows: `vzcore.store.forms`); a dense store of every row stays v3.
# v5: an encoder-decoder's sites (encoder, decoder, cross) and its two streams (`vzcore.store.sites`).
LAYOUT_VERSION = 3
REDUCED_LAYOUT = 4
SITES_LAYOUT = 5
READABLE_LAYOUTS = (1, 2, 3, 4, 5)

PARTS_GROUP = "parts"
PLAN_ARRAY = "plan"  # `[parts, 2]` int64: each part's (start, stop) id range; row k is part k
DONE_ARRAY = "done"  # `[parts]` int64: bit i set when the part is complete for root method i (the index)
SCORES_GROUP = "scores"  # inside a part group: `scores/{method}`
TOP_K_GROUP = "topk"  # v4, inside a part group: `topk/{method}/{offset,count,mass,source,value}`
TABLES_DIR = "tables"  # v3: `tables/examples/{k:05d}.parquet`, `tables/tokens/{k:05d}.parquet`; v2: one file each
LEASE_FILE = ".vz-lease.json"  # who writes the store's root now (jobs.score.lease)
WRITE_PROBE = ".vz-write-probe"  # written and removed at once by a run checking it may write

# Per-example arrays of a part group (`[m]`, or `[m+1]` for the offsets).
EXAMPLE_ARRAYS = ("example_id", "status", "length", "truncated", "token_offset", "value_offset")
# v4: per example its form and the rows it holds (`[m]`, `[m+1]`), and the rows themselves (`[R]`).
REDUCED_ARRAYS = ("form", "row_offset", "rows")
# Per-token arrays of a part group (`[T]`).
TOKEN_ARRAYS = ("token_ids", "word_ids", "tokens")

STATUS_SCORED = 0
STATUS_FAILED = 1  # reason in the part's attrs `failures: {example_id: reason}`
STATUS_SKIPPED = 2  # empty text: nothing to score
STATUS_NAMES = {STATUS_SCORED: "scored", STATUS_FAILED: "failed", STATUS_SKIPPED: "skipped"}

TARGET_CHUNK_BYTES = 1 << 20  # flat arrays are chunked at about 1 MiB


def part_path(part: int) -> str:
    """Return the group path of part `part`, e.g. `parts/00003`."""
    return f"{PARTS_GROUP}/{part:05d}"


def table_path(name: str, part: int | None = None) -> str:
    """Return where table `name` (`examples` or `tokens`) of part `part` lives; `part=None`: the
    single file of a v1/v2 store (`tables/examples.parquet`)."""
    return f"{TABLES_DIR}/{name}.parquet" if part is None else f"{TABLES_DIR}/{name}/{part:05d}.parquet"


def score_path(part: int, method: str) -> str:
    """Return the array path of `method`'s flat scores in part `part`."""
    return f"{part_path(part)}/{SCORES_GROUP}/{method}"


def packed_size(n_targets: int, n_sources: int, layers: int, causal: bool) -> int:
    """Return how many flat values one example's `layers` maps of `[n_targets, n_sources]` take."""
    return layers * map_entries(n_targets, n_sources, causal)


def packed_positions(n_targets: int, n_sources: int, causal: bool) -> np.ndarray:
    """Return where each packed value of one map sits in the map flattened row-major (`[targets * sources]`).

    The one packing order: every entry, or the valid lower triangle (row by row) if causal.
    """
    return np.flatnonzero(valid_entries(n_targets, n_sources, causal))


def pack_maps(maps: np.ndarray, causal: bool) -> np.ndarray:
    """Flatten `[layers, targets, sources]` maps to `[V]`, layer after layer (causal maps must be square)."""
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"expected maps of shape [layers, targets, sources], got {maps.shape}")
    layers, n_targets, n_sources = maps.shape
    if not causal:
        return maps.reshape(-1)
    where = packed_positions(n_targets, n_sources, causal)
    return maps.reshape(layers, -1)[:, where].reshape(-1)


def unpack_maps(flat: np.ndarray, n_targets: int, n_sources: int, layers: int, causal: bool) -> np.ndarray:
    """Rebuild `[layers, targets, sources]` maps from `pack_maps` output (0 above the diagonal when causal)."""
    flat = np.asarray(flat)
    want = packed_size(n_targets, n_sources, layers, causal)
    if flat.size != want:
        raise ValueError(
            f"expected {want} values for {n_targets} targets, {n_sources} sources, layers={layers}, "
            f"causal={causal}; got {flat.size}"
        )
    if not causal:
        return flat.reshape(layers, n_targets, n_sources)
    out = np.zeros((layers, n_targets * n_sources), dtype=flat.dtype)
    out[:, packed_positions(n_targets, n_sources, causal)] = flat.reshape(layers, -1)
    return out.reshape(layers, n_targets, n_sources)


def texts_fingerprint(texts) -> str:
    """Return the hash of a part's input rows, in order (part attr `data_hash`): what its maps were scored from."""
    h = hashlib.sha256()
    for t in texts:
        h.update(json.dumps(t, default=str, ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:32]
