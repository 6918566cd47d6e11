"""The store's Parquet tables (`tables/examples.parquet`, `tables/tokens.parquet`), rebuilt from the parts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["write_tables"]


def write_tables(out: str, root, plan: Sequence[dict], texts: Sequence[object], storage_options: dict) -> None:
    """Write both tables from the parts of `plan`, which must all be written."""
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vzcore.store.layout import STATUS_NAMES, part_path

    special = set(root.attrs.get("special_token_ids", []))
    ex: dict[str, list] = {
        k: [] for k in ("example_id", "part", "index_in_part", "status", "reason", "length", "truncated", "text")
    }
    tk: dict[str, list] = {k: [] for k in ("example_id", "position", "token_id", "token", "word_id", "is_special")}
    for p in plan:
        g = root[part_path(p["part"])]
        ids, status, length = g["example_id"][:], g["status"][:], g["length"][:]
        trunc, offs = g["truncated"][:], g["token_offset"][:]
        token_ids, tokens, word_ids = g["token_ids"][:], g["tokens"][:], g["word_ids"][:]
        failures = g.attrs.get("failures", {})
        for k, i in enumerate(ids.tolist()):
            ex["example_id"].append(i)
            ex["part"].append(p["part"])
            ex["index_in_part"].append(k)
            ex["status"].append(STATUS_NAMES[int(status[k])])
            ex["reason"].append(failures.get(str(i), ""))
            ex["length"].append(int(length[k]))
            ex["truncated"].append(bool(trunc[k]))
            t = texts[i] if i < len(texts) else None
            ex["text"].append(t if isinstance(t, str) else None)
            a, b = int(offs[k]), int(offs[k + 1])
            tk["example_id"].extend([i] * (b - a))
            tk["position"].extend(range(b - a))
            tk["token_id"].extend(token_ids[a:b].tolist())
            tk["token"].extend(str(s) for s in tokens[a:b])
            tk["word_id"].extend(word_ids[a:b].tolist())
            tk["is_special"].extend(bool(x in special) for x in token_ids[a:b].tolist())
    schema_types = {
        "example_id": pa.int64(),
        "position": pa.int32(),
        "token_id": pa.int32(),
        "word_id": pa.int32(),
        "part": pa.int32(),
        "index_in_part": pa.int32(),
        "length": pa.int32(),
    }
    opts = storage_options if "://" in out else {}
    for name, cols in (("examples", ex), ("tokens", tk)):
        table = pa.table(
            {k: pa.array(np.asarray(v) if k in schema_types else v, type=schema_types.get(k)) for k, v in cols.items()}
        )
        with fsspec.open(f"{out.rstrip('/')}/tables/{name}.parquet", "wb", **opts) as f:
            pq.write_table(table, f)
