"""The input of an encoder–decoder run: (source, target) rows of a dataset, read a slice at a time.

A row is `{"source": ..., "target": ...}`. A text source is its string; an audio source is
`{"path": ..., "bytes": ...}`, never decoded here: a `datasets` Audio column is read undecoded
(`Audio(decode=False)`: the file's bytes, or its path), a column of file names becomes absolute
paths (relative ones against the data file's folder). The actors read, check and resample the
audio (`jobs.score.pairstep`), so the driver never holds waveforms. The target is a string, or None
(the model's own greedy output; also when there is no target column).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.score.data import READ_ROWS, DatasetError, _load

__all__ = ["PairSource", "open_pairs"]


@dataclass(frozen=True)
class PairSource:
    """The rows a run scores: a source column and an optional target column."""

    dataset: Any  # a datasets.Dataset
    source_column: str
    target_column: str | None
    count: int  # rows the job covers (its limit applied)
    total: int
    audio: bool  # sources are audio
    base: Path | None = None  # where relative file names of an audio column point from
    positions_column: str | None = None  # never set: `--targets` does not apply to pairs

    def rows(self, start: int, stop: int) -> list[dict]:
        """Return rows `[start, stop)` (cut at `count`) as `{"source": ..., "target": ...}`."""
        stop = min(stop, self.count)
        if stop <= start:
            return []
        block = self.dataset[start:stop]
        sources = list(block[self.source_column])
        targets = list(block[self.target_column]) if self.target_column else [None] * len(sources)
        if self.audio:
            sources = [self._audio(s) for s in sources]
        return [{"source": s, "target": t} for s, t in zip(sources, targets, strict=True)]

    def _audio(self, value: Any) -> Any:
        if isinstance(value, str):  # a file name: kept as the data gives it, with the file's size
            # The row (and so the part's data hash) names the file as the data does, not where this
            # machine holds it: the same data moved elsewhere resumes. The actor finds it from the
            # data file's folder (`PairSpec.audio_base`). Its size stands for its content (the driver
            # reads no audio): another file of another size under the same name is other data.
            path = Path(value).expanduser()
            full = path if path.is_absolute() or self.base is None else self.base / path
            return {"path": value, "bytes": None, "size": full.stat().st_size if full.is_file() else None}
        if isinstance(value, dict):  # `Audio(decode=False)`: bytes and/or path
            return {"path": value.get("path"), "bytes": value.get("bytes")}
        return value  # None, or something the actor will refuse with a reason

    def batches(self, start: int = 0, stop: int | None = None, size: int = READ_ROWS) -> Iterator[list]:
        stop = self.count if stop is None else min(stop, self.count)
        for a in range(start, stop, size):
            yield self.rows(a, min(a + size, stop))


def _column(ds, name: str, option: str) -> Any:
    if name not in ds.column_names:
        raise DatasetError(f"{option} {name}: no such column; the dataset has {ds.column_names}")
    return ds.features[name]


def open_pairs(
    dataset: str | None,
    config: str | None,
    split: str,
    source_column: str,
    target_column: str | None,
    limit: int | None,
    data_format: str | None,
    audio: bool,
) -> PairSource:
    """Open the first `limit` rows of `source_column` (and `target_column`), ids being row positions."""
    import datasets

    if dataset is None:
        raise DatasetError("an encoder-decoder run needs --dataset (pairs, or audio with transcripts)")
    ds = _load(dataset, config, split, data_format)
    if isinstance(ds, datasets.IterableDataset):
        raise DatasetError("streaming datasets are not supported: save it with save_to_disk and pass that folder")
    feature = _column(ds, source_column, "--source-column")
    kind = getattr(feature, "dtype", None)
    if audio:
        if isinstance(feature, datasets.Audio):
            ds = ds.cast_column(source_column, datasets.Audio(decode=False))  # bytes or paths: decoded on the actors
        elif kind not in ("string", "large_string"):
            raise DatasetError(
                f"--source-column {source_column} holds {kind or feature}: the model reads audio, so give a "
                "datasets Audio column or a column of audio file names"
            )
    elif kind not in ("string", "large_string"):
        raise DatasetError(f"--source-column {source_column} holds {kind or feature}, not text")
    if target_column is not None:
        tkind = getattr(_column(ds, target_column, "--target-column"), "dtype", None)
        if tkind not in ("string", "large_string"):
            raise DatasetError(f"--target-column {target_column} holds {tkind}, not text")
    keep = [source_column] + ([target_column] if target_column and target_column != source_column else [])
    ds = ds.select_columns(keep)
    total = len(ds)
    if total == 0:
        raise DatasetError(f"{dataset} has no rows: nothing to score")
    path = Path(dataset)
    base = (path if path.is_dir() else path.parent).resolve() if path.exists() else None
    count = total if limit is None else min(limit, total)
    return PairSource(ds, source_column, target_column, count, total, audio, base)
