"""The store's Parquet tables: one row per example and one per token, built from the part groups.

The one place that knows their columns: the driver writes `tables/` from every part once the plan
is done, and a reader builds the same rows from single parts before that.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from vzcore.store.layout import STATUS_NAMES, TABLES_DIR, part_path
from vzcore.store.location import Location
from vzcore.tokens import sequence_texts

__all__ = ["EXAMPLE_COLUMNS", "TOKEN_COLUMNS", "part_tables", "write_tables"]

EXAMPLE_COLUMNS = ("example_id", "part", "index_in_part", "status", "reason", "length", "truncated", "text")
TOKEN_COLUMNS = ("example_id", "position", "token_id", "token", "text", "word_id", "is_special")


def part_tables(
    group, part: int, special_ids: Sequence[int], text_of: Callable[[int], str | None] | None = None
) -> tuple:
    """Return `(examples, tokens)` pyarrow tables of one part group; `text_of(example_id)` fills `text`."""
    import pyarrow as pa

    ids, status = group["example_id"][:], group["status"][:]
    offsets = group["token_offset"][:]
    token_ids = group["token_ids"][:]
    failures = dict(group.attrs.get("failures", {}))
    texts = [text_of(int(i)) if text_of else None for i in ids]
    examples = pa.table(
        {
            "example_id": pa.array(ids, pa.int64()),
            "part": pa.array(np.full(len(ids), part), pa.int32()),
            "index_in_part": pa.array(np.arange(len(ids)), pa.int32()),
            "status": pa.array([STATUS_NAMES.get(int(x), str(x)) for x in status], pa.string()),
            "reason": pa.array([failures.get(str(int(i)), "") for i in ids], pa.string()),
            "length": pa.array(group["length"][:], pa.int32()),
            "truncated": pa.array(group["truncated"][:], pa.bool_()),
            "text": pa.array([t if isinstance(t, str) else None for t in texts], pa.string()),
        }
    )
    counts = np.diff(offsets)
    pieces = [str(t) for t in group["tokens"][:]]
    shown = [t for a, b in itertools.pairwise(offsets) for t in sequence_texts(pieces[a:b])]
    tokens = pa.table(
        {
            "example_id": pa.array(np.repeat(ids, counts), pa.int64()),
            "position": pa.array(np.arange(len(token_ids)) - np.repeat(offsets[:-1], counts), pa.int32()),
            "token_id": pa.array(token_ids, pa.int32()),
            "token": pa.array(pieces, pa.string()),  # the raw piece, as the tokenizer writes it
            "text": pa.array(shown, pa.string()),  # what it reads as (vzcore.tokens.sequence_texts)
            "word_id": pa.array(group["word_ids"][:], pa.int32()),
            "is_special": pa.array(np.isin(token_ids, np.asarray(special_ids, dtype=np.int64)), pa.bool_()),
        }
    )
    return examples, tokens


def write_tables(
    location: Location,
    root,
    plan: Sequence[dict],
    special_ids: Sequence[int],
    text_of: Callable[[int], str | None] | None = None,
) -> None:
    """Write `tables/examples.parquet` and `tables/tokens.parquet` from the parts of `plan` (all written)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pieces = [part_tables(root[part_path(p["part"])], p["part"], special_ids, text_of) for p in plan]
    for k, name in enumerate(("examples", "tokens")):
        tables = [piece[k] for piece in pieces]
        table = pa.concat_tables(tables) if tables else _empty(EXAMPLE_COLUMNS if k == 0 else TOKEN_COLUMNS)
        with location.open_file(f"{TABLES_DIR}/{name}.parquet", "wb") as f:
            pq.write_table(table, f)


def _empty(columns: Sequence[str]):
    import pyarrow as pa

    return pa.table({c: pa.array([], pa.string()) for c in columns})
