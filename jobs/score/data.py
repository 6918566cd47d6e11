"""Open the job's input: a map-style `datasets.Dataset` whose row index is the example id, read a slice at a time."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DatasetError", "TextSource", "chatterbot_lines", "open_texts"]

READ_ROWS = 8192  # rows read at once when the driver streams over the input

FORMATS = ("text", "csv", "json", "parquet")  # `--format`: the `datasets` builders for local files
_BUILDERS = {".txt": "text", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
DEFAULT_SPLIT = "train"  # what `datasets` calls the one split of plain files


class DatasetError(ValueError):
    """The dataset, split or column cannot be used."""


def chatterbot_lines() -> list[str]:
    """Return every line of the chatterbot-corpus English conversations, file by file in name order."""
    import yaml

    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("the default dataset needs `pip install --no-deps chatterbot-corpus pyyaml`")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "english"
    lines: list[str] = []
    for path in sorted(folder.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conversation in doc.get("conversations", []):
            lines.extend(str(line) for line in conversation if line is not None)
    return lines


def _one_split(dataset: str, split: str, what: str) -> None:
    """Refuse a `--split` other than the default for data that has no splits (it would be ignored)."""
    if split != DEFAULT_SPLIT:
        raise DatasetError(f"--split {split}: {dataset} is {what}, with no splits to choose from; leave --split out")


def _load(dataset: str | None, config: str | None, split: str, data_format: str | None):
    import datasets

    if dataset is None:
        if data_format is not None:
            raise DatasetError("--format is for local files given as --dataset")
        _one_split("the default dataset (chatterbot-corpus)", split, "one list of lines")
        return datasets.Dataset.from_dict({"text": chatterbot_lines()})
    path = Path(dataset).expanduser()  # `--dataset=~/x.jsonl`: the shell leaves that `~` alone
    if path.exists():
        if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
            if data_format is not None:
                raise DatasetError(f"--format {data_format}: {dataset} is a saved dataset, not files to read")
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise DatasetError(f"split {split!r} not in {dataset}; it has {sorted(ds)}")
                return ds[split]
            _one_split(dataset, split, "a saved single dataset")
            return ds
        return _load_files(path, dataset, split, data_format)
    if _looks_like_a_file(dataset):  # asking the hub would retry for half a minute, then mislead
        raise DatasetError(f"no such file: {dataset}")
    if data_format is not None:
        raise DatasetError(f"--format {data_format}: {dataset} is not a local file or folder")
    try:
        return datasets.load_dataset(dataset, config, split=split)
    except Exception as err:  # hub errors come in many types; say what was tried
        raise DatasetError(f"unknown dataset {dataset!r} (not a local path; hub load failed: {err})") from err


# Extensions of data files: a name ending in one is a file, never a hub dataset id.
_FILE_SUFFIXES = (".txt", ".csv", ".tsv", ".json", ".jsonl", ".parquet", ".arrow")


def _looks_like_a_file(name: str) -> bool:
    """Whether a `--dataset` that does not exist names a local file rather than a hub dataset.

    Hub ids are `name` or `owner/name` (letters, digits, `-`, `_`, `.`), so one inner `/` stays a
    hub id; a leading `/`, `.` or `~`, a backslash, two `/` or a data-file extension is a path.
    """
    return (
        name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1 or name.lower().endswith(_FILE_SUFFIXES)
    )


def _load_files(path: Path, dataset: str, split: str, data_format: str | None):
    """Read a local file, or a folder's files, with one `datasets` builder (from `data_format` or the extensions)."""
    import datasets

    if path.is_dir():
        visible = (p for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith("."))
        files = [p for p in visible if data_format is not None or p.suffix in _BUILDERS]
    else:
        files = [path]
    if data_format is not None:
        builder = data_format
    else:
        kinds = {_BUILDERS.get(p.suffix) for p in files}
        if not files or None in kinds or len(kinds) != 1:
            raise DatasetError(
                f"cannot tell the format of {dataset}: need files of one kind among {sorted(_BUILDERS)},"
                f" or --format {'|'.join(FORMATS)}"
            )
        builder = kinds.pop()
    if not files:
        raise DatasetError(f"{dataset} holds no files: nothing to score")
    _one_split(dataset, split, "plain files" if path.is_dir() else "a plain file")
    kw = {"delimiter": "\t"} if builder == "csv" and files[0].suffix == ".tsv" else {}
    if all(p.stat().st_size == 0 for p in files):
        raise DatasetError(f"{dataset} is empty: nothing to score")
    try:
        return datasets.load_dataset(builder, data_files=[str(p) for p in files], split=DEFAULT_SPLIT, **kw)
    except Exception as err:  # the builders raise many kinds for unreadable or empty files
        if "corresponds to no data" in str(err):  # a header and no rows
            raise DatasetError(f"{dataset} has no rows: nothing to score") from None
        raise DatasetError(f"cannot read {dataset} as {builder}: {type(err).__name__}: {err}") from None


@dataclass(frozen=True)
class TextSource:
    """The rows a job scores: one text column of a dataset, read a slice at a time.

    A dataset loaded from files or the hub is Arrow on disk, memory-mapped: the driver never holds
    the corpus's texts, only the slices of the parts in flight and of the pass that plans them.
    """

    dataset: Any  # a datasets.Dataset
    column: str
    count: int  # rows the job covers (its limit applied)
    total: int  # rows the dataset has
    positions_column: str | None = None  # `--targets column=NAME`: each row's target positions

    def rows(self, start: int, stop: int) -> list:
        """Return the column's values of rows `[start, stop)` (cut at `count`)."""
        stop = min(stop, self.count)
        return list(self.dataset[start:stop][self.column]) if stop > start else []

    def positions(self, start: int, stop: int) -> list:
        """Return the positions column's values of rows `[start, stop)` (None per row without that column)."""
        stop = min(stop, self.count)
        if self.positions_column is None or stop <= start:
            return [None] * max(stop - start, 0)
        return list(self.dataset[start:stop][self.positions_column])

    def batches(self, start: int = 0, stop: int | None = None, size: int = READ_ROWS) -> Iterator[list]:
        """Yield the rows of `[start, stop)` in order, `size` at a time."""
        stop = self.count if stop is None else min(stop, self.count)
        for a in range(start, stop, size):
            yield self.rows(a, min(a + size, stop))


def open_texts(
    dataset: str | None,
    config: str | None,
    split: str,
    text_column: str,
    limit: int | None,
    data_format: str | None = None,
    positions_column: str | None = None,
) -> TextSource:
    """Open the first `limit` rows' `text_column` (all rows for None; `doc.text` for a nested
    field), ids being row positions. Local files are read as `data_format` (one of `FORMATS`),
    or as their extensions say.

    `positions_column` (a top-level column of token positions: an int or a list of ints per row) is
    kept beside the text for `--targets column=NAME`.

    Streaming datasets are refused: parts are contiguous id ranges, which needs random access.
    """
    import datasets

    ds = _load(dataset, config, split, data_format)
    if isinstance(ds, datasets.IterableDataset):
        raise DatasetError("streaming datasets are not supported: save it with save_to_disk and pass that folder")
    texts = _texts(ds)
    if positions_column is not None and positions_column not in ds.column_names:
        raise DatasetError(f"--targets column={positions_column}: no such column; the dataset has {ds.column_names}")
    kept = ds.select_columns([positions_column]) if positions_column is not None else None
    ds = _select(ds, text_column, texts)
    if kept is not None and positions_column != text_column:
        # Side by side as stored: a JSON column mixing `2` and `[3]` is read as `Json`, whose decoded
        # values Arrow cannot rebuild into one column (`add_column` fails); each row decodes alone.
        ds = datasets.concatenate_datasets([ds, kept], axis=1)
    total = len(ds)
    if total == 0:
        raise DatasetError(f"{dataset or 'the dataset'} has no rows: nothing to score")
    count = total if limit is None else min(limit, total)
    feature = ds.features[text_column]
    if isinstance(feature, datasets.Json):  # `datasets` reads a JSON field whose rows differ in type so
        seen = ", ".join(_json_types(ds.data.column(text_column).slice(0, count)))
        raise DatasetError(
            f"column {text_column!r} holds values of several types ({seen}), not text: make every value a"
            " string (rows without text may be null), or choose another column"
        )
    kind = getattr(feature, "dtype", None)
    if kind not in _TEXT_TYPES:
        raise DatasetError(f"column {text_column!r} holds {kind or feature}, not text; text columns: {texts}")
    return TextSource(ds, text_column, count, total, positions_column)


_TEXT_TYPES = ("string", "large_string")


def _texts(ds) -> list[str]:
    """Return the dataset's text columns, nested fields as `doc.text`."""
    return [c for c, f in ds.features.flatten().items() if getattr(f, "dtype", None) in _TEXT_TYPES]


def _select(ds, column: str, texts: list[str]):
    """Return `ds` with only `column`: a top-level column, or a nested field `doc.text` (flattened to that name)."""
    if column in ds.column_names:
        return ds.select_columns([column])
    top = column.split(".")[0]
    if "." in column and top in ds.column_names:
        flat = ds.select_columns([top]).flatten()
        if column in flat.column_names:
            return flat.select_columns([column])
    raise DatasetError(f"column {column!r} not in the dataset; it has {ds.column_names}, text columns: {texts}")


def _json_types(values) -> list[str]:
    """Return the JSON types but null of a column `datasets` read as JSON (an Arrow array of JSON texts)."""
    import pyarrow.compute as pc

    names = {'"': "string", "{": "object", "[": "array", "t": "boolean", "f": "boolean"}
    storage = values.combine_chunks()
    storage = getattr(storage, "storage", storage)  # the extension array's JSON texts
    starts = pc.utf8_slice_codeunits(pc.utf8_trim_whitespace(storage), 0, 1).to_pylist()
    return sorted({names.get(c, "number") for c in starts if c not in (None, "n")})  # nulls are allowed
