"""Open the job's input: a map-style `datasets.Dataset` whose row index is the example id, read a slice at a time."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DatasetError", "TextSource", "chatterbot_lines", "open_texts"]

READ_ROWS = 8192  # rows read at once when the driver streams over the input

_BUILDERS = {".txt": "text", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


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


def _load(dataset: str | None, config: str | None, split: str):
    import datasets

    if dataset is None:
        return datasets.Dataset.from_dict({"text": chatterbot_lines()})
    path = Path(dataset)
    if path.exists():
        if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise DatasetError(f"split {split!r} not in {dataset}; it has {sorted(ds)}")
                ds = ds[split]
            return ds
        files = sorted(p for p in path.rglob("*") if p.suffix in _BUILDERS) if path.is_dir() else [path]
        kinds = {_BUILDERS.get(p.suffix) for p in files}
        if not files or None in kinds or len(kinds) != 1:
            raise DatasetError(f"cannot tell the format of {dataset}: need files of one kind among {sorted(_BUILDERS)}")
        builder = kinds.pop()
        kw = {"delimiter": "\t"} if builder == "csv" and files[0].suffix == ".tsv" else {}
        if all(p.stat().st_size == 0 for p in files):
            raise DatasetError(f"{dataset} is empty: nothing to score")
        try:
            return datasets.load_dataset(builder, data_files=[str(p) for p in files], split="train", **kw)
        except Exception as err:  # the builders raise many kinds for unreadable or empty files
            if "corresponds to no data" in str(err):  # a header and no rows
                raise DatasetError(f"{dataset} has no rows: nothing to score") from None
            raise DatasetError(f"cannot read {dataset} as {builder}: {type(err).__name__}: {err}") from None
    try:
        return datasets.load_dataset(dataset, config, split=split)
    except Exception as err:  # hub errors come in many types; say what was tried
        raise DatasetError(f"unknown dataset {dataset!r} (not a local path; hub load failed: {err})") from err


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

    def rows(self, start: int, stop: int) -> list:
        """Return the column's values of rows `[start, stop)` (cut at `count`)."""
        stop = min(stop, self.count)
        return list(self.dataset[start:stop][self.column]) if stop > start else []

    def batches(self, start: int = 0, stop: int | None = None, size: int = READ_ROWS) -> Iterator[list]:
        """Yield the rows of `[start, stop)` in order, `size` at a time."""
        stop = self.count if stop is None else min(stop, self.count)
        for a in range(start, stop, size):
            yield self.rows(a, min(a + size, stop))


def open_texts(dataset: str | None, config: str | None, split: str, text_column: str, limit: int | None) -> TextSource:
    """Open the first `limit` rows' `text_column` (all rows for None), ids being row positions.

    Streaming datasets are refused: parts are contiguous id ranges, which needs random access.
    """
    import datasets

    ds = _load(dataset, config, split)
    if isinstance(ds, datasets.IterableDataset):
        raise DatasetError("streaming datasets are not supported: save it with save_to_disk and pass that folder")
    if text_column not in ds.column_names:
        raise DatasetError(f"column {text_column!r} not in the dataset; it has {ds.column_names}")
    kind = getattr(ds.features[text_column], "dtype", None)
    if kind not in ("string", "large_string"):
        texts = [c for c, f in ds.features.items() if getattr(f, "dtype", None) in ("string", "large_string")]
        raise DatasetError(
            f"column {text_column!r} holds {kind or ds.features[text_column]}, not text; text columns: {texts}"
        )
    total = len(ds)
    if total == 0:
        raise DatasetError(f"{dataset or 'the dataset'} has no rows: nothing to score")
    count = total if limit is None else min(limit, total)
    return TextSource(ds.select_columns([text_column]), text_column, count, total)
