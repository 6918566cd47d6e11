"""The store's Parquet tables: one row per example and one per token, a file of each per part.

The one place that knows their columns. A part's writer writes its two files (v3:
`tables/examples/{k:05d}.parquet`, `tables/tokens/{k:05d}.parquet`) beside its arrays, before it
marks the part complete, so the tables grow with the run and read as one table
(`pyarrow.dataset.dataset(f"{store}/tables/examples")`, DuckDB `read_parquet('.../*.parquet')`,
pandas). Stores of layout v1/v2 hold one file of each, written at the end of a run.
`vzcore.store.reader.Store.table` reads them through `table_files` and `read_table`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from vzcore.store.layout import STATUS_NAMES, table_path
from vzcore.store.location import Location
from vzcore.store.sites import DECODINGS, STREAM_ARRAYS
from vzcore.tokens import sequence_texts

__all__ = [
    "EXAMPLE_COLUMNS",
    "PAIR_EXAMPLE_COLUMNS",
    "PAIR_TOKEN_COLUMNS",
    "PART_ARRAYS",
    "TOKEN_COLUMNS",
    "pair_tables",
    "part_tables",
    "read_table",
    "table_files",
    "write_part_tables",
]

EXAMPLE_COLUMNS = ("example_id", "part", "index_in_part", "status", "reason", "length", "truncated", "text")
TOKEN_COLUMNS = ("example_id", "position", "token_id", "token", "text", "word_id", "is_special")
# v5 (encoder-decoder pairs): how each target was decoded and its given text; each token's stream.
PAIR_EXAMPLE_COLUMNS = (*EXAMPLE_COLUMNS, "target_length", "decoding", "target_text")
PAIR_TOKEN_COLUMNS = (*TOKEN_COLUMNS, "stream")
# The part arrays the tables are built from.
PART_ARRAYS = ("example_id", "status", "length", "truncated", "token_offset", "token_ids", "word_ids", "tokens")


def part_tables(
    arrays: Mapping[str, np.ndarray],
    part: int,
    special_ids: Sequence[int],
    failures: Mapping[str, str] | None = None,
    text_of: Callable[[int], str | None] | None = None,
) -> tuple:
    """Return `(examples, tokens)` pyarrow tables of one part from its arrays (`PART_ARRAYS`, as a
    writer holds them, or read from the part's group); `text_of(example_id)` fills `text`."""
    import pyarrow as pa

    ids, status = np.asarray(arrays["example_id"]), np.asarray(arrays["status"])
    offsets = np.asarray(arrays["token_offset"])
    token_ids = np.asarray(arrays["token_ids"])
    failures = dict(failures or {})
    texts = [text_of(int(i)) if text_of else None for i in ids]
    examples = pa.table(
        {
            "example_id": pa.array(ids, pa.int64()),
            "part": pa.array(np.full(len(ids), part), pa.int32()),
            "index_in_part": pa.array(np.arange(len(ids)), pa.int32()),
            "status": pa.array([STATUS_NAMES.get(int(x), str(x)) for x in status], pa.string()),
            "reason": pa.array([failures.get(str(int(i)), "") for i in ids], pa.string()),
            "length": pa.array(np.asarray(arrays["length"]), pa.int32()),
            "truncated": pa.array(np.asarray(arrays["truncated"]), pa.bool_()),
            "text": pa.array([t if isinstance(t, str) else None for t in texts], pa.string()),
        }
    )
    counts = np.diff(offsets)
    pieces = [str(t) for t in arrays["tokens"]]
    shown = [t for a, b in itertools.pairwise(offsets) for t in sequence_texts(pieces[a:b])]
    tokens = pa.table(
        {
            "example_id": pa.array(np.repeat(ids, counts), pa.int64()),
            "position": pa.array(np.arange(len(token_ids)) - np.repeat(offsets[:-1], counts), pa.int32()),
            "token_id": pa.array(token_ids, pa.int32()),
            "token": pa.array(pieces, pa.string()),  # the raw piece, as the tokenizer writes it
            "text": pa.array(shown, pa.string()),  # what it reads as (vzcore.tokens.sequence_texts)
            "word_id": pa.array(np.asarray(arrays["word_ids"]), pa.int32()),
            "is_special": pa.array(np.isin(token_ids, np.asarray(special_ids, dtype=np.int64)), pa.bool_()),
        }
    )
    return examples, tokens


def _row_texts(row: object) -> tuple[str | None, str | None]:
    """A pair's input row (`{"source": ..., "target": ...}`) as the texts the examples table shows: the
    source text (an audio row: its file's path, if it has one) and the given target text."""
    if not isinstance(row, Mapping):
        return None, None
    source, target = row.get("source"), row.get("target")
    if isinstance(source, Mapping):
        source = source.get("path")
    return (source if isinstance(source, str) else None), (target if isinstance(target, str) else None)


def pair_tables(
    arrays: Mapping[str, np.ndarray],
    part: int,
    special_ids: Sequence[int],
    failures: Mapping[str, str] | None = None,
    row_of: Callable[[int], object] | None = None,
) -> tuple:
    """Return `(examples, tokens)` of one v5 part: `part_tables`'s columns for the source stream, plus
    each example's target length, decoding (`forced` / `greedy`) and given target text, and the target
    stream's tokens (the tokens table's `stream`: `source` or `target`). A frame (id -1) is never special."""
    import pyarrow as pa

    texts = {int(i): _row_texts(row_of(int(i)) if row_of else None) for i in arrays["example_id"]}
    examples, source = part_tables(arrays, part, special_ids, failures, lambda i: texts[i][0])
    names = STREAM_ARRAYS["target"]
    target_arrays = {**arrays, **{role: arrays[name] for role, name in names.items()}}
    _, target = part_tables(target_arrays, part, special_ids, failures)
    ids = np.asarray(arrays["example_id"])
    examples = examples.append_column("target_length", pa.array(np.asarray(arrays["target_length"]), pa.int32()))
    decoding = [DECODINGS.get(int(d), str(d)) for d in arrays["decoding"]]
    examples = examples.append_column("decoding", pa.array(decoding, pa.string()))
    examples = examples.append_column("target_text", pa.array([texts[int(i)][1] for i in ids], pa.string()))
    source = source.append_column("stream", pa.array(["source"] * len(source), pa.string()))
    target = target.append_column("stream", pa.array(["target"] * len(target), pa.string()))
    return examples, pa.concat_tables([source, target])


def write_part_tables(location: Location, part: int, tables: tuple) -> None:
    """Write one part's `(examples, tokens)` tables to their files (the part's writer alone)."""
    import pyarrow.parquet as pq

    for name, table in zip(("examples", "tokens"), tables, strict=True):
        with location.open_file(table_path(name, part), "wb") as f:
            pq.write_table(table, f)


def table_files(location: Location, layout: int, name: str, parts: Sequence[int]) -> list[str]:
    """Return the files of table `name`: v3, one per part of `parts`; v1/v2, the one file if written."""
    if layout < 3:
        fs, path = location.filesystem(table_path(name))
        return [path] if fs.exists(path) else []
    _, root = location.filesystem()
    return [f"{root.rstrip('/')}/{table_path(name, k)}" for k in parts]


def read_table(location: Location, name: str, files: Sequence[str], columns: Sequence[str] | None = None, filters=None):
    """Return `files` of table `name` read as one pyarrow Table (with no file, an empty one of `columns`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not files:
        names = list(columns or (EXAMPLE_COLUMNS if name == "examples" else TOKEN_COLUMNS))
        return pa.table({c: pa.array([], pa.string()) for c in names})
    fs, _ = location.filesystem()
    return pq.read_table(
        files if len(files) > 1 else files[0],
        filesystem=fs,
        columns=list(columns) if columns else None,
        filters=filters,
    )
