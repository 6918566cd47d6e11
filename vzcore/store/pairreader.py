"""Read a v5 part: encoder–decoder pairs with every site's maps, or one square site as if it were a v3 store.

`read_pairs` gives each scored example as a `vzcore.result.Seq2SeqResult` (the sites' maps keyed by
site). `SiteGroup` wraps a part's group so that a `PartReader` reads one site alone: the site's
stream under v3's array names (`length`, `token_offset`, `tokens`, ...), its values' offsets as
`value_offset` and its values as `scores/{method}`. The statistics, the corpus queries and `vz show`
then read the encoder and decoder sites as they read any single-stack store.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from vzcore.result import Seq2SeqResult, SiteMaps
from vzcore.store.errors import StoreError
from vzcore.store.layout import SCORES_GROUP, STATUS_SCORED
from vzcore.store.sites import DECODING_GREEDY, STREAM_ARRAYS, site_offsets, unpack_sites

__all__ = ["SiteGroup", "describe_sites", "read_pairs", "square_view"]


def describe_sites(info: Any) -> list[str]:
    """Lines of `Store.describe` for a v5 store's sites (none for v1-v4)."""
    return [
        f"  site {s.name}: [{len(s.layers)} layers, {s.rows}, {s.columns}] (layers {list(s.layers)} of "
        f"{s.num_layers}{', causal' if s.causal else ''}"
        # only a site that reads the source stream has source positions to speak of
        f"{f'; source positions are {info.source_kind}' if 'source' in (s.rows, s.columns) else ''})"
        for s in info.site_layouts
    ]


def square_view(info: Any, name: str) -> Any:
    """The root attributes of one square site of a v5 store, read as a single-stack store (`Store.site`)."""
    if info.view is not None:
        raise StoreError(f"this is already a view of site {info.view}")
    view = info.site_view(name)  # an unknown site: a StoreError naming the store's
    if not next(s for s in info.site_layouts if s.name == name).square:
        raise StoreError(
            f"site {name} relates target tokens to source positions (not square): read its maps with "
            f"store.example(id).sites[{name!r}]; `vz aggregate` gives its statistics"
        )
    return view


class _SiteValues:
    """One method's values of one site, example after example: slices at example boundaries only."""

    def __init__(self, array: Any, value_offset: np.ndarray, before: np.ndarray, offset: np.ndarray) -> None:
        self.array, self.value_offset, self.before, self.offset = array, value_offset, before, offset

    def __len__(self) -> int:
        return int(self.offset[-1])

    def __getitem__(self, where: slice) -> np.ndarray:
        v0, v1, _ = where.indices(len(self))
        a = int(np.searchsorted(self.offset, v0, side="left"))
        b = int(np.searchsorted(self.offset, v1, side="right")) - 1
        if a >= len(self.offset) or self.offset[a] != v0 or self.offset[b] != v1 or b < a:
            raise ValueError(f"a site's values are read whole examples at a time, not [{v0}:{v1}]")
        base = int(self.value_offset[a])
        flat = self.array[base : int(self.value_offset[b])]
        pieces = [
            flat[int(self.value_offset[k]) - base + int(self.before[k]) :][: int(self.offset[k + 1] - self.offset[k])]
            for k in range(a, b)
        ]
        return np.concatenate([np.zeros(0, dtype=flat.dtype), *pieces])


class SiteGroup:
    """A v5 part group seen as one square site's v3 part (read-only): see the module docstring."""

    def __init__(self, group: Any, info: Any, part: int) -> None:
        layouts = {s.name: s for s in info.site_layouts}
        site = layouts[info.view]
        if not site.square:
            raise StoreError(
                f"site {site.name} relates target tokens to source positions: its maps are not square, so it is "
                "not read as a single-stack store; read its maps with store.example(id).sites['cross']"
            )
        self.group, self.attrs = group, group.attrs
        self.names = STREAM_ARRAYS[site.rows]
        try:
            n_source, n_target = group["length"][:], group["target_length"][:]
            self.value_offset = group["value_offset"][:]
        except Exception as err:
            raise StoreError(f"part {part}: its lengths cannot be read: {type(err).__name__}: {err}") from err
        self.before, self.offset = site_offsets(list(layouts.values()), site.name, n_source, n_target)

    def __getitem__(self, name: str) -> Any:
        if name == "value_offset":
            return self.offset
        if name in self.names:
            return self.group[self.names[name]]
        if name.startswith(f"{SCORES_GROUP}/"):
            return _SiteValues(self.group[name], self.value_offset, self.before, self.offset)
        return self.group[name]


def read_pairs(
    reader: Any, a: int, b: int, methods: Sequence[str], ids: set[int] | None = None
) -> Iterator[tuple[int, Seq2SeqResult]]:
    """Yield `(example_id, Seq2SeqResult)` of the scored examples `a..b-1` of a v5 part (`reader`: a
    `PartReader`), reading one slice per array."""
    info = reader.info
    layouts = info.site_layouts
    first, last = int(reader.example_id[a]), int(reader.example_id[b - 1])
    span = f"example {first}" if first == last else f"examples {first}..{last}"
    streams = {}
    for stream, names in STREAM_ARRAYS.items():
        offset = reader.array(names["token_offset"])
        t0, t1 = int(offset[a]), int(offset[b])
        got = {role: reader.array(names[role], slice(t0, t1), span) for role in ("token_ids", "word_ids", "tokens")}
        streams[stream] = (offset, t0, got)
    target_length = reader.array("target_length")
    decoding = reader.array("decoding")
    v0, v1 = int(reader.value_offset[a]), int(reader.value_offset[b])
    flats = {m: reader.array(f"{SCORES_GROUP}/{m}", slice(v0, v1), span) for m in methods}
    for k in range(a, b):
        eid = int(reader.example_id[k])
        if reader.status[k] != STATUS_SCORED or (ids is not None and eid not in ids):
            continue
        n_src, n_tgt = int(reader.length[k]), int(target_length[k])
        part = {}
        for stream, (offset, t0, got) in streams.items():
            cut = slice(int(offset[k]) - t0, int(offset[k + 1]) - t0)
            words = got["word_ids"][cut]
            part[stream] = (
                [int(t) for t in got["token_ids"][cut]],
                [str(t) for t in got["tokens"][cut]],
                None if (words < 0).all() else [None if w < 0 else int(w) for w in words],
            )
        per_method = {
            m: unpack_sites(layouts, flat[int(reader.value_offset[k]) - v0 : int(reader.value_offset[k + 1]) - v0],
                            n_src, n_tgt)
            for m, flat in flats.items()
        }  # fmt: skip
        sites = {
            s.name: SiteMaps(
                s.site(info.audio), list(s.layers), {m: x[s.name].astype(np.float32) for m, x in per_method.items()}
            )
            for s in layouts
        }
        src_ids, src_tokens, src_words = part["source"]
        tgt_ids, tgt_tokens, tgt_words = part["target"]
        yield (
            eid,
            Seq2SeqResult(
                source_ids=None if info.audio else src_ids,
                source_tokens=src_tokens,
                target_ids=tgt_ids,
                target_tokens=tgt_tokens,
                target_from="greedy" if int(decoding[k]) == DECODING_GREEDY else "given",
                n_source=n_src,
                sites=sites,
                source_word_ids=src_words,
                target_word_ids=tgt_words,
            ),
        )
