"""Layout v5: an encoder–decoder's sites in one store (docs/store-layout.md#layout-v5-encoder-decoder-sites).

An example is a (source, target) pair with two streams: the source (the encoder's tokens, or its
audio frames) and the target (the decoder's input tokens). Each site relates two of them
(`vzcore.maps.encdec_site`): `encoder` `[L_enc, n_src, n_src]`, `decoder` `[L_dec, n_tgt, n_tgt]`
(causal: its lower triangle), `cross` `[L_dec, n_tgt, n_src]`. One flat `scores/{method}` array per
part holds, per example, every site's maps packed as `layout.pack_maps` packs them, site after site
in the root's order; `value_offset` covers them together. So completion, resume and `vz verify`
stay per method, and a site's values are found from the two lengths alone.

Pure numpy; no zarr here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from vzcore.maps import encdec_site
from vzcore.store.layout import pack_maps, packed_size, unpack_maps

__all__ = [
    "DECODINGS",
    "DECODING_FORCED",
    "DECODING_GREEDY",
    "PAIR_EXAMPLE_ARRAYS",
    "SITE_ORDER",
    "SOURCE_KINDS",
    "STREAM_ARRAYS",
    "TARGET_TOKEN_ARRAYS",
    "SiteLayout",
    "pack_sites",
    "parse_sites",
    "site_offsets",
    "site_sizes",
    "unpack_sites",
]

SITE_ORDER = ("encoder", "decoder", "cross")  # the order of a store's sites, and of their values per example
SOURCE_KINDS = ("tokens", "frames")  # what a source position is: a text token, or an audio frame
DECODING_FORCED, DECODING_GREEDY = 0, 1  # part array `decoding`: the target given (forced), or the model's own
DECODINGS = {DECODING_FORCED: "forced", DECODING_GREEDY: "greedy"}
# Per-example arrays a v5 part adds (`[m]`, `[m+1]` for the offset) and its target stream's per-token arrays.
PAIR_EXAMPLE_ARRAYS = ("target_length", "target_offset", "decoding")
TARGET_TOKEN_ARRAYS = ("target_ids", "target_word_ids", "target_tokens")
# Each stream's arrays, by their role: the source keeps v3's names, so v3 readers of tokens read it.
STREAM_ARRAYS = {
    "source": {"length": "length", "token_offset": "token_offset", "token_ids": "token_ids",
               "word_ids": "word_ids", "tokens": "tokens"},
    "target": {"length": "target_length", "token_offset": "target_offset", "token_ids": "target_ids",
               "word_ids": "target_word_ids", "tokens": "target_tokens"},
}  # fmt: skip


@dataclass(frozen=True)
class SiteLayout:
    """One stored site: its name, the block indices stored (of its stack's `num_layers`), whether causal."""

    name: str
    layers: tuple[int, ...]
    num_layers: int

    def __post_init__(self) -> None:
        if self.name not in SITE_ORDER:
            raise ValueError(f"unknown site {self.name!r}; a store holds {', '.join(SITE_ORDER)}")
        if not self.layers or any(not 0 <= k < self.num_layers for k in self.layers):
            raise ValueError(f"site {self.name}: layers {list(self.layers)} are not blocks 0..{self.num_layers - 1}")

    @property
    def causal(self) -> bool:
        return self.name == "decoder"

    @property
    def rows(self) -> str:
        """The stream of the maps' rows: `source` (encoder) or `target` (decoder, cross)."""
        return "source" if self.name == "encoder" else "target"

    @property
    def columns(self) -> str:
        """The stream of the maps' columns: `target` (decoder) or `source` (encoder, cross)."""
        return "target" if self.name == "decoder" else "source"

    @property
    def square(self) -> bool:
        return self.rows == self.columns

    def site(self, audio: bool):
        """The site (`vzcore.maps.Site`) its maps come from."""
        return encdec_site(self.name, audio)

    def shape(self, n_source: int, n_target: int) -> tuple[int, int, int]:
        """`[layers, rows, columns]` of one example's maps."""
        n = {"source": n_source, "target": n_target}
        return len(self.layers), n[self.rows], n[self.columns]

    def size(self, n_source: int, n_target: int) -> int:
        """Packed values of one example's maps at this site (causal: the lower triangles)."""
        layers, rows, cols = self.shape(n_source, n_target)
        return packed_size(rows, cols, layers, self.causal) if rows and cols else 0

    def to_attr(self) -> dict:
        return {"name": self.name, "layers": list(self.layers), "num_layers": self.num_layers, "causal": self.causal}

    @classmethod
    def from_attr(cls, attr: Mapping) -> SiteLayout:
        return cls(str(attr["name"]), tuple(int(k) for k in attr["layers"]), int(attr["num_layers"]))


def parse_sites(attr: object) -> list[SiteLayout]:
    """Read the root's `sites` attribute; a `ValueError` says what is wrong (unknown, repeated or out of order)."""
    if not isinstance(attr, list) or not attr:
        raise ValueError(f"'sites' must be a non-empty list of sites, not {attr!r}")
    try:
        sites = [SiteLayout.from_attr(a) for a in attr]
    except (KeyError, TypeError) as err:
        raise ValueError(f"a site of 'sites' lacks {err}: {attr!r}") from None
    names = [s.name for s in sites]
    if names != [s for s in SITE_ORDER if s in names]:
        raise ValueError(f"sites {names} repeat or are out of order ({', '.join(SITE_ORDER)})")
    return sites


def site_sizes(sites: Sequence[SiteLayout], n_source: int, n_target: int) -> list[int]:
    """Packed values of each site of one example, in the store's site order."""
    return [s.size(n_source, n_target) for s in sites]


def site_offsets(
    sites: Sequence[SiteLayout], name: str, n_source: np.ndarray, n_target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return, for examples of lengths `n_source`, `n_target` `[m]`, where site `name`'s values start
    inside each example's values `[m]`, and the site's own offsets `[m+1]` (its values, example after example)."""
    k = [s.name for s in sites].index(name)
    sizes = np.asarray([site_sizes(sites, int(a), int(b)) for a, b in zip(n_source, n_target, strict=True)])
    sizes = sizes.reshape(len(n_source), len(sites)).astype(np.int64)
    before = sizes[:, :k].sum(1)
    return before, np.concatenate([[0], np.cumsum(sizes[:, k])]).astype(np.int64)


def pack_sites(sites: Sequence[SiteLayout], maps: Mapping[str, np.ndarray], n_source: int, n_target: int) -> np.ndarray:
    """Pack one example's maps of one method (`maps[site]`, shaped as `SiteLayout.shape`) into `[V]`."""
    out = []
    for s in sites:
        want = s.shape(n_source, n_target)
        got = np.asarray(maps[s.name])
        if got.shape != want:
            raise ValueError(f"site {s.name}: maps of shape {got.shape}; the store holds {list(want)}")
        out.append(pack_maps(got, s.causal))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def unpack_sites(sites: Sequence[SiteLayout], flat: np.ndarray, n_source: int, n_target: int) -> dict[str, np.ndarray]:
    """Rebuild one example's maps per site from `pack_sites` output."""
    sizes = site_sizes(sites, n_source, n_target)
    if len(flat) != sum(sizes):
        raise ValueError(f"expected {sum(sizes)} values for {n_source} source and {n_target} target positions")
    out, at = {}, 0
    for s, size in zip(sites, sizes, strict=True):
        layers, rows, cols = s.shape(n_source, n_target)
        out[s.name] = unpack_maps(flat[at : at + size], rows, cols, layers, s.causal)
        at += size
    return out
