"""Where an aggregate goes: a new or empty folder, or this store's aggregate; written all at once.

`--out` is refused (before any part is read) when it holds anything the aggregator did not write,
`--overwrite` or not, and when it holds the aggregate of another store unless `--overwrite`. An
aggregate's own files are those its `summary.json` lists (tables, plots) with `report.md` and
`summary.json`; replacing an aggregate deletes those by name and nothing else.

Which store an aggregate came from is its `source` (in `summary.json`): the store's scoring
identity (model files, layers, part sizes, per-method options) and the hash of the rows of its
first done part, so that another dataset scored with the same model and methods is another store,
and the same store moved to another path is still the same one.

A local aggregate is written into a hidden sibling folder (`.NAME.partial-*`) and renamed into
place, so an interrupted run leaves the previous aggregate, or nothing, at `--out`. Object storage
cannot rename a folder: there the files go straight to their place behind a marker
(`.vz-aggregate-writing`), the old `summary.json` removed first and the new one written last, so
a folder without `summary.json` is never a finished aggregate, and the next run recognises the
marked folder as its own and replaces it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vzcore.store.layout import part_path
from vzcore.store.location import Location

__all__ = ["REPORT", "SUMMARY", "WRITING", "AggregateOut", "OutputError", "store_source"]

SUMMARY = "summary.json"  # written last: an aggregate is finished when it is there
REPORT = "report.md"
WRITING = ".vz-aggregate-writing"  # object storage only: the files of an aggregate being written


class OutputError(Exception):
    """The output folder cannot take this aggregate; nothing was touched."""


def store_source(store) -> dict:
    """Return what identifies `store` (an opened store with a done part), as its aggregate records it."""
    first = store.done_parts()[0]
    return {
        "store": store.location.absolute(),
        "data_identity": store.info.data_identity,
        "identity": dict(store.identity),
        "rows": {"part": first, "data_hash": _data_hash(store, first)},
    }


def _data_hash(store, part) -> str | None:
    """The hash of the rows a part was scored from (None for a store that does not keep it)."""
    try:
        return store.location.open_group(mode="r", path=part_path(int(part))).attrs.get("data_hash")
    except Exception:  # a part that cannot be read (or a damaged record) proves nothing either way
        return None


def _same_store(old: dict | None, store, source: dict) -> bool:
    """Whether `old` (a recorded source) is `store`: the same scoring identity and the same rows."""
    if not old or old.get("data_identity") != source["data_identity"]:
        return False
    if any(old.get("identity", {}).get(m, h) != h for m, h in source["identity"].items()):
        return False
    rows = old.get("rows") or {}
    part, theirs = rows.get("part"), rows.get("data_hash")
    ours = source["rows"]["data_hash"] if part == source["rows"]["part"] else _data_hash(store, part)
    if theirs and ours:
        return theirs == ours
    return old.get("store") == source["store"]  # no row hashes to compare: only the same path is proof


class AggregateOut:
    """An aggregate's output folder: local or an fsspec URL (with the store's storage options)."""

    def __init__(self, out: str | Path, storage_options: dict | None = None) -> None:
        self.location = Location(str(out), dict(storage_options or {}))
        self.name = str(out)

    def check(self, store, source: dict, overwrite: bool) -> list[str]:
        """Refuse an output that is not new, empty or this store's aggregate (another store's:
        unless `overwrite`); return the files of the aggregate there, which publishing replaces."""
        names, manifest = self._contents()
        if manifest is None:
            own: set[str] = set()
        else:
            own = {SUMMARY, REPORT, WRITING, *manifest.get("outputs", []), *manifest.get("plots", [])}
        foreign = sorted(set(names) - own)
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise OutputError(
                f"--out {self.name} holds files this aggregate did not write ({shown}); nothing was touched:"
                " choose a new or empty folder"
            )
        if manifest is not None and not overwrite and not _same_store(manifest.get("source"), store, source):
            raise OutputError(
                f"--out {self.name} holds the aggregate of another store ({manifest.get('store')});"
                " pass --overwrite to replace it, or choose another --out"
            )
        return sorted(set(names) & own)

    def _contents(self) -> tuple[list[str], dict | None]:
        """Return the names in the folder and its aggregate's manifest (its summary, or the marker
        of one being written), or None when it holds no aggregate."""
        try:
            fs, path = self.location.filesystem()
            fs.invalidate_cache(path)  # another run (or this one) may have written it since it was listed
            if not fs.exists(path):
                return [], None
            if not fs.isdir(path):
                raise OutputError(f"--out {self.name} exists and is not a folder")
            names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
            for marker in (SUMMARY, WRITING):
                if marker in names:
                    manifest = _manifest(fs.cat_file(f"{path}/{marker}"))
                    if manifest is not None:
                        return names, manifest
        except OutputError:
            raise
        except Exception as err:
            why = self.location.access_problem(err) or f"{type(err).__name__}: {err}"
            raise OutputError(f"cannot read --out {self.name}: {why}") from err
        return names, None

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """Yield a new local folder to write the aggregate into (beside `--out` when local, so that
        it renames into place); it is removed if the aggregate is not published."""
        if self.location.is_url:
            folder = Path(tempfile.mkdtemp(prefix="vz-aggregate-"))
        else:
            out = Path(self.location.path)
            folder = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
            folder.mkdir(parents=True)
        try:
            yield folder
        finally:
            if folder.exists():  # only what this run wrote: it made the folder
                shutil.rmtree(folder)

    def publish(self, staged: Path, old: list[str], source: dict, log: Callable[[str], None]) -> None:
        """Put the aggregate written in `staged` at `--out`, replacing `old` (the files `check` returned)."""
        if self.location.is_url:
            self._upload(staged, old, source)
            return
        out = Path(self.location.path)
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        if not out.exists():
            staged.rename(out)
            return
        retired = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        out.rename(retired)
        staged.rename(out)
        for name in old:
            (retired / name).unlink(missing_ok=True)
        try:
            retired.rmdir()  # never a recursive delete: it holds nothing else unless written meanwhile
        except OSError:
            log(f"the previous aggregate's folder {retired} holds files written meanwhile: left as it is")

    def _upload(self, staged: Path, old: list[str], source: dict) -> None:
        fs, path = self.location.filesystem()
        new = sorted(p.name for p in staged.iterdir())
        marker = {"store": source["store"], "source": source, "outputs": sorted((set(old) | set(new)) - {WRITING})}
        fs.pipe_file(f"{path}/{WRITING}", json.dumps(marker).encode())
        for name in sorted(set(old) - {WRITING}, key=lambda n: n != SUMMARY):  # the summary first
            fs.rm_file(f"{path}/{name}")
        for name in sorted(new, key=lambda n: n == SUMMARY):  # the summary last
            fs.put_file(str(staged / name), f"{path}/{name}")
        fs.rm_file(f"{path}/{WRITING}")


def _manifest(data: bytes) -> dict | None:
    """Parse a summary or a marker; None when it is not one of ours."""
    try:
        manifest = json.loads(data)
    except ValueError:
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("outputs"), list) else None
