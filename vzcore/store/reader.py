"""Read a store (docs/store-layout.md): what it holds, one example, batches, Parquet tables.

`open_store(path_or_url)` checks the layout version and reads which parts are done, per method,
from the completion index (a few reads whatever the store's size; stores without one, v1/v2, read
every part's attributes); an example comes back as a `vzcore.ScoreResult`, read from only the
chunks that hold it.
zarr, pyarrow and xarray are imported inside functions so that `import vzcore` stays free of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from vzcore.result import Seq2SeqResult, WordResult
from vzcore.store.completion import PartInfo, store_parts
from vzcore.store.errors import ExampleNotScoredError, StoreError
from vzcore.store.layout import part_path, table_path
from vzcore.store.location import Location
from vzcore.store.pairreader import describe_sites, square_view
from vzcore.store.partreader import PartReader, open_part
from vzcore.store.root import RootAttrs
from vzcore.store.tables import read_table, table_files

__all__ = ["ExampleNotScoredError", "PartReader", "Store", "StoreError", "open_part", "open_store"]


class Store:
    """A scoring run's store, opened read-only. Build it with `open_store`."""

    def __init__(self, location: Location, root: Any, info: RootAttrs, parts: list[PartInfo]) -> None:
        self.location = location
        self.path = location.path
        self.storage_options = location.storage_options
        self._root = root
        self.attrs = dict(root.attrs)
        self.info = info
        self.config: dict = info.config
        self.identity: dict = info.identity
        self.versions: dict = info.versions
        self.methods: list[str] = list(info.methods)
        self.layers: list[int] = list(info.layers)  # stored block indices: each example has one map per entry
        self.model_num_layers: int = info.model_num_layers  # the model's block count
        self.causal: bool = info.causal
        self.model_type: str | None = info.model_type
        self.special_token_ids: list[int] = list(info.special_token_ids)
        self.plan: list[dict] = info.plan
        self.layout: int = int(self.attrs.get("vz_layout", 0))
        self.parts = parts  # which methods each planned part holds complete (`vzcore.store.completion`)
        self._starts = np.asarray([p["start"] for p in self.plan], dtype=np.int64)
        self._part_readers: dict[int, PartReader] = {}

    # ---- sites (layout v5: an encoder-decoder's encoder, decoder and cross-attention maps) ---------
    @property
    def sites(self) -> list[str]:
        """The sites whose maps the store holds: `encoder`, `decoder`, `cross` (v5), or `self` (v1-v4)."""
        return [s.name for s in self.info.site_layouts] or ["self"]

    def site(self, name: str) -> Store:
        """Return this v5 store seen as one site's store (read-only): `example(id)` gives a `ScoreResult`
        of that site's maps over its stream, and the statistics, corpus queries and `vz show` read it
        as a single-stack store. Square sites only (encoder, decoder): a cross map relates two streams."""
        if name == "self" and not self.info.sites:
            return self
        return Store(self.location, self._root, square_view(self.info, name), self.parts)

    # ---- what is in the store -----------------------------------------------------------------
    @property
    def num_examples(self) -> int:
        """Planned examples (dataset rows) over all parts."""
        return sum(p.stop - p.start for p in self.parts)

    def done_parts(self, methods: Sequence[str] | None = None) -> list[int]:
        """Return the parts that are done for every one of `methods` (default: all the store's methods)."""
        methods = self.methods if methods is None else list(methods)
        return [p.part for p in self.parts if p.done_for(methods)]

    @property
    def complete(self) -> bool:
        return len(self.done_parts()) == len(self.parts) and bool(self.parts)

    def describe(self, problems: int = 5) -> str:
        """Return a short summary: model, methods, layers, parts counted by state, and the first
        `problems` parts that are not usable (a few lines, whatever the store's size)."""
        done = self.done_parts()
        kind = "encoder-decoder" if self.info.sites else "causal" if self.causal else "encoder"
        lines = [
            f"store {self.path} (layout v{self.attrs.get('vz_layout')})",
            f"  model: {self.config.get('model', '?')} ({self.model_type}, {kind})",
            f"  methods: {', '.join(self.methods)}; layers: {self.layers} of {self.model_num_layers}",
            f"  examples planned: {self.num_examples} in {len(self.parts)} parts; done for all methods: {len(done)}",
        ]
        lines += describe_sites(self.info)  # layout v5: an encoder-decoder's sites
        if self.info.reduced:  # layout v4: say what is stored of each map
            targets = self.info.targets or {"kind": "all"}
            rows = targets["kind"] + (f"={targets['column']}" if targets.get("column") else "")
            lines.append(f"  maps stored: {self.info.form.describe()}; rows: {rows}")
        unusable = [
            (p, p.problem or f"done only for {', '.join(p.complete)}")
            for p in self.parts
            if not p.done_for(self.methods)
        ]
        if unusable:
            states: dict[str, int] = {}
            for _, why in unusable:
                kind = why.split(":")[0].split(" (")[0]
                states[kind] = states.get(kind, 0) + 1
            lines.append(
                "  not usable: " + ", ".join(f"{k} {why}" for why, k in sorted(states.items(), key=lambda kv: -kv[1]))
            )
            for p, why in unusable[:problems]:
                lines.append(f"  part {p.part} [{p.start}, {p.stop}): {why}")
            if len(unusable) > problems:
                lines.append(f"  ... and {len(unusable) - problems} more (store.parts lists every part)")
        return "\n".join(lines)

    def _methods(self, methods: Sequence[str] | str | None) -> list[str]:
        if methods is None:
            return list(self.methods)
        methods = [methods] if isinstance(methods, str) else list(methods)
        unknown = [m for m in methods if m not in self.methods]
        if unknown:
            raise StoreError(f"store has no method {unknown}; it holds {self.methods}")
        return methods

    # ---- examples -----------------------------------------------------------------------------
    def part_of(self, example_id: int) -> PartInfo:
        """Return the planned part holding `example_id` (a `StoreError` if no part plans it)."""
        k = int(np.searchsorted(self._starts, example_id, side="right")) - 1
        if k < 0 or not self.parts[k].start <= example_id < self.parts[k].stop:
            raise StoreError(f"example {example_id} is not in the store's plan (ids 0..{self.num_examples - 1})")
        return self.parts[k]

    def part_reader(self, part: int) -> PartReader:
        """Return a reader of one part (its per-example arrays are read once and cached)."""
        if part not in self._part_readers:
            self._part_readers[part] = PartReader(self._root[part_path(part)], part, self.info)
        return self._part_readers[part]

    def example(self, example_id: int, methods: Sequence[str] | str | None = None) -> Any:
        """Return one example's tokens and `[layers, n, n]` maps as a `vzcore.ScoreResult`; from a v5
        store, its streams and each site's maps as a `vzcore.result.Seq2SeqResult` (`.sites[name].scores`);
        from a words store (`--store words`), its `[layers, W, W]` word maps as the `vzcore.WordResult`
        that `ScoreResult.word_level()` gave when it was scored."""
        methods = self._methods(methods)
        info = self.part_of(int(example_id))
        if not info.done_for(methods):
            why = info.problem or f"done only for {list(info.complete)}"
            raise ExampleNotScoredError(f"example {example_id} is in part {info.part}, which is not usable: {why}")
        return self.part_reader(info.part).example(int(example_id), methods, text=self._text(int(example_id)))

    def xarray(self, example_id: int, methods: Sequence[str] | str | None = None):
        """Return one example as an `xarray.Dataset`: a variable per method with dims `(layer, target, source)`."""
        import xarray as xr

        result = self.example(example_id, methods)
        if isinstance(result, Seq2SeqResult):
            raise StoreError(f"{self.path} holds sites {self.sites}: take store.site(name).xarray(id) (square sites)")
        n = result.n
        labels = result.words if isinstance(result, WordResult) else result.tokens  # a words store's rows are words
        coords = {
            "layer": result.layers,
            "target": np.arange(n),
            "source": np.arange(n),
            "target_token": ("target", list(labels)),
            "source_token": ("source", list(labels)),
        }
        data = {m: (("layer", "target", "source"), v) for m, v in result.scores.items()}
        attrs = {"example_id": int(example_id), "text": result.text or "", "truncated": int(result.truncated)}
        return xr.Dataset(data, coords=coords, attrs=attrs)

    def iter_examples(
        self,
        batch_size: int = 32,
        methods: Sequence[str] | str | None = None,
        ids: Sequence[int] | None = None,
    ) -> Iterator[list[tuple[int, Any]]]:
        """Yield batches of `(example_id, ScoreResult)` (v5: `Seq2SeqResult`) over scored examples of the
        done parts, in id order."""
        methods = self._methods(methods)
        wanted = None if ids is None else {int(i) for i in ids}
        batch: list[tuple[int, Any]] = []
        for part in self.done_parts(methods):
            for block in self.part_reader(part).iter_results(methods, ids=wanted):
                for item in block:
                    batch.append(item)
                    if len(batch) == batch_size:
                        yield batch
                        batch = []
        if batch:
            yield batch

    # ---- tables ----------------------------------------------------------------------------------
    def has_tables(self) -> bool:
        """Whether the tables hold rows: v3 writes them with each part; v1/v2 only when every part was done."""
        return bool(table_files(self.location, self.layout, "examples", self.done_parts()))

    def table(self, name: str, columns: Sequence[str] | None = None, filters=None, parts: Sequence[int] | None = None):
        """Return table `name` (`examples` or `tokens`) as a pyarrow Table, over the done parts (or `parts`).

        v3 stores keep a Parquet file per part (`tables/{name}/{k:05d}.parquet`, present while a run
        still goes); v1/v2 one `tables/{name}.parquet`, written when every part was done (a
        `StoreError` before that)."""
        files = table_files(self.location, self.layout, name, self.done_parts() if parts is None else parts)
        if not files and self.layout < 3:
            raise StoreError(
                f"{self.path} has no {table_path(name)} (written only when every part is done);"
                f" usable parts: {self.done_parts()}"
            )
        return read_table(self.location, name, files, columns, filters)

    def examples_table(self):
        """Return the examples table of the done parts as a pandas DataFrame."""
        if self.has_tables():
            return self.table("examples").to_pandas()
        import pandas as pd

        frames = [self.part_reader(k).examples_frame() for k in self.done_parts()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def texts(self, example_ids: Sequence[int]) -> dict[int, str]:
        """Return the texts of `example_ids` that the tables hold (v3: read from their parts' files only)."""
        ids = sorted({int(i) for i in example_ids})
        try:
            parts = sorted({self.part_of(i).part for i in ids}) if self.layout >= 3 else None
            if not ids or (parts is None and not self.has_tables()):
                return {}
            t = self.table("examples", columns=["example_id", "text"], filters=[("example_id", "in", ids)], parts=parts)
        except Exception:  # the text is a convenience; its absence must not break reading the maps
            return {}
        pairs = zip(t.column("example_id").to_pylist(), t.column("text").to_pylist(), strict=True)
        return {int(i): text for i, text in pairs if text is not None}

    def _text(self, example_id: int) -> str | None:
        return self.texts([example_id]).get(int(example_id))


def open_store(path_or_url: Any, storage_options: dict | None = None, *, check_parts: bool = False) -> Store:
    """Open a store (a local path or an fsspec URL such as `s3://bucket/run.zarr`) read-only.

    Which parts are done comes from the store's completion index; `check_parts=True` reads every
    part's own attributes instead (one read per part: the truth the index is rebuilt from, for
    `vz verify`). Raises `StoreError` if nothing is there, if it is not a vz store, or if its layout
    is not one this version reads. A partly written store opens; `store.describe()` says which
    parts are usable.
    """
    location = Location(str(path_or_url), dict(storage_options or {}))
    try:
        root = location.open_group(mode="r")
    except Exception as err:  # zarr raises several kinds for "nothing there"
        problem = location.access_problem(err)
        if problem:
            raise StoreError(f"cannot read {location.path}: {problem}") from err
        raise StoreError(f"no store at {location.path}: {type(err).__name__}: {err}") from err
    info = RootAttrs.read(root, location.path)
    return Store(location, root, info, store_parts(root, info, check_parts=check_parts))
