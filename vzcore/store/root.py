"""The store's root: what a run holds. One writer (the scoring driver, or a synthetic store
builder through the same function), any number of readers.

The plan (every part's id range) grows with the corpus, so it is not a root attribute: it is the
`plan` array `[parts, 2]` (start, stop) beside the parts. The root's metadata, which zarr reads
whenever a part's arrays are created, stays a few kilobytes whatever the store's size.

Which parts are complete (their marks and the completion index `done` beside the plan) is
`vzcore.store.completion`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from vzcore.store.errors import StoreError
from vzcore.store.forms import TARGET_KINDS, StoreForm
from vzcore.store.layout import (
    LAYOUT_VERSION,
    LEASE_FILE,
    PARTS_GROUP,
    PLAN_ARRAY,
    READABLE_LAYOUTS,
    REDUCED_LAYOUT,
    SITES_LAYOUT,
    WRITE_PROBE,
)
from vzcore.store.sites import SOURCE_KINDS, SiteLayout, parse_sites

__all__ = ["RootAttrs", "folder_state", "read_plan", "write_root_attrs"]

INDEX_CHUNK = 1 << 14  # parts per chunk of the plan and the index: marking a part rewrites one small chunk
MAX_METHODS = 63  # the index keeps a method per bit of an int64


@dataclass(frozen=True)
class RootAttrs:
    """What the root group's attributes say (docs/store-layout.md)."""

    methods: list[str]
    layers: list[int]  # the stored block indices, ascending: each example holds `len(layers)` maps
    model_num_layers: int  # how many blocks the model has (the stored layers may be a subset)
    causal: bool  # causal maps are stored as their lower triangle
    model_type: str
    plan: list[dict]  # parts: `{"part": k, "start": a, "stop": b}`
    special_token_ids: list[int] = field(default_factory=list)
    config: dict = field(default_factory=dict)  # the latest run's resolved config (no credentials)
    identity: dict = field(default_factory=dict)  # per method: hash of what its scores depend on
    data_identity: str = ""  # hash of what the shared example and token arrays depend on
    versions: dict = field(default_factory=dict)  # package versions of the run that created the store
    # v4 only (`vzcore.store.forms`): how maps are stored, and which rows (None: dense, every row: v3).
    store_form: dict | None = None  # `StoreForm.to_attr()`
    targets: dict | None = None  # `{"kind": "last" | "mask" | "column", "column": name}`
    # v5 only (`vzcore.store.sites`): an encoder-decoder's stored sites, and what a source position is.
    sites: list[dict] | None = None  # `SiteLayout.to_attr()` per site, in `SITE_ORDER`
    source_kind: str | None = None  # `tokens` or `frames`
    # Not stored: the one site this view of a v5 store reads (`site_view`), as if it were a v3 store.
    view: str | None = None

    @property
    def form(self) -> StoreForm:
        return StoreForm.from_attr(self.store_form)

    @property
    def reduced(self) -> bool:
        """Whether the store is layout v4: a reduced form, or only some rows."""
        return self.form.reduced or self.targets is not None

    @property
    def site_layouts(self) -> list[SiteLayout]:
        """A v5 store's sites (empty for v1-v4)."""
        return [SiteLayout.from_attr(a) for a in self.sites or []]

    @property
    def audio(self) -> bool:
        return self.source_kind == "frames"

    def site_view(self, name: str) -> RootAttrs:
        """Return the attributes of site `name` of a v5 store read as one site: its layers, its stack's
        block count, whether causal (`vzcore.store.reader.Store.site`)."""
        layouts = {s.name: s for s in self.site_layouts}
        if name not in layouts:
            raise StoreError(f"the store holds no site {name!r}; it holds {', '.join(layouts) or 'one site (self)'}")
        s = layouts[name]
        return replace(self, layers=list(s.layers), model_num_layers=s.num_layers, causal=s.causal, view=name)

    @property
    def num_maps(self) -> int:
        """Maps per scored example: one per stored layer."""
        return len(self.layers)

    def mask_of(self, methods) -> int:
        """Return the index bits of `methods` (bit i: `self.methods[i]`)."""
        return sum(1 << self.methods.index(m) for m in set(methods))

    def methods_of(self, mask: int) -> tuple[str, ...]:
        """Return the methods whose bits are set in `mask`, in the root's order."""
        return tuple(m for i, m in enumerate(self.methods) if int(mask) >> i & 1)

    def to_attrs(self) -> dict:
        """The root attributes (the plan goes to its own array: `write_root_attrs`)."""
        if self.view is not None:
            raise ValueError(f"a view of site {self.view!r} is read-only: write the store's own attributes")
        attrs = asdict(self)
        attrs.pop("plan")
        attrs.pop("view")
        for key in ("store_form", "targets", "sites", "source_kind"):  # a dense store of every row stays v3
            if attrs[key] is None or (key == "store_form" and not self.form.reduced):
                attrs.pop(key)
        version = SITES_LAYOUT if self.sites else REDUCED_LAYOUT if self.reduced else LAYOUT_VERSION
        return {"vz_layout": version, **attrs}

    @classmethod
    def read(cls, group, where: str) -> RootAttrs:
        """Read a store's root: its attributes and, from v2 on, its plan array (`StoreError` if not a vz store)."""
        attrs = dict(group.attrs)
        if attrs.get("vz_layout") in READABLE_LAYOUTS and attrs["vz_layout"] >= 2:  # v1 kept it in its attributes
            try:
                attrs["plan"] = read_plan(group)
            except Exception as err:
                raise StoreError(f"{where}: the plan array cannot be read: {type(err).__name__}: {err}") from err
        return cls.from_attrs(attrs, where)

    @classmethod
    def from_attrs(cls, attrs: Mapping, where: str) -> RootAttrs:
        """Parse a root's attributes (with `plan`); raise `StoreError` naming `where` if they are not a vz store's."""
        version = attrs.get("vz_layout")
        if version is None:
            raise StoreError(
                f"{where} is a zarr group but not a vz store: no 'vz_layout' attribute"
                " (a scoring run writes its root attributes first; was it started?)"
            )
        if version not in READABLE_LAYOUTS:
            raise StoreError(
                f"{where} has store layout v{version}; this vzcore reads v{', v'.join(map(str, READABLE_LAYOUTS))}."
                " Rescore it, or read it with the vzcore version that wrote it (see its 'versions' attribute)."
            )
        # v1 called the model's layer count `num_layers`; its maps were always one per stored layer.
        count_key = "num_layers" if version == 1 else "model_num_layers"
        missing = [k for k in ("plan", "methods", "layers", count_key) if k not in attrs]
        if missing:
            raise StoreError(f"{where}: root attributes {missing} are missing; the store is damaged or not finished")
        try:
            form = StoreForm.from_attr(attrs.get("store_form"))
        except (TypeError, ValueError) as err:
            raise StoreError(f"{where}: {err}; read it with the vzcore version that wrote it") from None
        targets = attrs.get("targets")
        if targets is not None and (not isinstance(targets, dict) or targets.get("kind") not in TARGET_KINDS):
            raise StoreError(f"{where}: unknown targets {targets!r}; this vzcore reads {', '.join(TARGET_KINDS)}")
        sites, source_kind = attrs.get("sites"), attrs.get("source_kind")
        if version == SITES_LAYOUT or sites is not None:
            try:
                sites = [s.to_attr() for s in parse_sites(sites)]
            except ValueError as err:
                raise StoreError(f"{where}: {err}; read it with the vzcore version that wrote it") from None
            if source_kind not in SOURCE_KINDS:
                raise StoreError(f"{where}: unknown source kind {source_kind!r}; this vzcore reads {SOURCE_KINDS}")
        return cls(
            sites=sites,
            source_kind=source_kind if sites else None,
            store_form=form.to_attr() if form.reduced else None,
            targets=dict(targets) if targets is not None else None,
            methods=list(attrs["methods"]),
            layers=[int(x) for x in attrs["layers"]],
            model_num_layers=int(attrs[count_key]),
            causal=bool(attrs.get("causal", False)),
            model_type=str(attrs.get("model_type", "")),
            plan=sorted((dict(p) for p in attrs["plan"]), key=lambda p: p["part"]),
            special_token_ids=[int(t) for t in attrs.get("special_token_ids", [])],
            config=dict(attrs.get("config", {})),
            identity=dict(attrs.get("identity", {})),
            data_identity=str(attrs.get("data_identity", "")),
            versions=dict(attrs.get("versions", {})),
        )


def write_root_attrs(group, attrs: RootAttrs) -> None:
    """Write `attrs` as the root group's attributes and its plan array (the only writer of the root)."""
    from zarr.codecs import ZstdCodec

    if len(attrs.methods) > MAX_METHODS:
        raise StoreError(f"a store holds at most {MAX_METHODS} methods; this one would hold {len(attrs.methods)}")
    ranges = np.asarray([[p["start"], p["stop"]] for p in attrs.plan], dtype=np.int64).reshape(-1, 2)
    chunk = (max(1, min(len(ranges), INDEX_CHUNK)), 2)
    plan = group.create_array(
        PLAN_ARRAY, shape=ranges.shape, dtype="int64", chunks=chunk, overwrite=True, compressors=ZstdCodec(level=3)
    )
    if len(ranges):
        plan[:] = ranges
    group.require_group(PARTS_GROUP)  # the parts' parent: their writers then need not check for it
    group.attrs.update(attrs.to_attrs())


def read_plan(group) -> list[dict]:
    """Return the plan array of a store's root group as `[{"part": k, "start": a, "stop": b}, ...]`."""
    ranges = group[PLAN_ARRAY][:]
    return [{"part": k, "start": int(a), "stop": int(b)} for k, (a, b) in enumerate(ranges)]


def folder_state(location) -> tuple[str, list[str]]:
    """Return what is at a store's location, and its entries: `("absent" | "empty" | "store" | "other", names)`.

    `"store"` means the root's attributes prove a vz store; `"empty"` also covers a bare zarr
    group with no attributes (a run stopped before writing them). Anything else is `"other"`: never ours.
    """
    import json

    fs, path = location.filesystem()
    if not fs.exists(path):
        return "absent", []
    if not fs.isdir(path):
        return "other", [path.rsplit("/", 1)[-1]]
    ours = {LEASE_FILE, WRITE_PROBE}  # a run's own files, there before the root is written
    names = sorted(n for p in fs.ls(path, detail=False) if (n := p.rstrip("/").rsplit("/", 1)[-1]) not in ours)
    if not names:
        return "empty", names
    if "zarr.json" not in names:
        return "other", names
    try:
        meta = json.loads(fs.cat_file(f"{path.rstrip('/')}/zarr.json"))
    except (OSError, ValueError):
        return "other", names
    attrs = meta.get("attributes") or {}
    if "vz_layout" in attrs:
        return "store", names
    return (
        ("empty", names)
        if names == ["zarr.json"] and not attrs and meta.get("node_type") == "group"
        else ("other", names)
    )
