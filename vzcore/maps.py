"""The map contract: what a context-mixing map relates, its shape, its valid entries, and its layers.

A map belongs to a *site*, the attention whose value vectors are zeroed: a stack's self-attention,
or a decoder's cross-attention to its encoder. It relates two *streams*: the targets' (rows: the
positions whose representation is affected) and the sources' (columns: the positions whose value
is zeroed). A method returns one map per scored layer, `[layers, targets, sources]`, rows summing
to 1. Self-attention relates a stream to itself, so its maps are square; a cross-attention map is
`[layers, decoder tokens, encoder positions]`. Single-stack models have one site, self-attention
over the text's tokens (`self_site`); encoder–decoders have three (`encdec_site`).

Pure Python and numpy: the library, the store layout and the aggregator all read this one definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DECODER_TOKENS",
    "ENCODER_FRAMES",
    "ENCODER_TOKENS",
    "FRAMES",
    "STREAM_KINDS",
    "TOKENS",
    "Site",
    "Stream",
    "encdec_site",
    "layer_position",
    "map_entries",
    "resolve_layers",
    "self_site",
    "valid_entries",
]

STREAM_KINDS = ("tokens", "frames")  # a stream's positions: text tokens, or audio frames


@dataclass(frozen=True)
class Stream:
    """A sequence whose positions index a map's rows or columns."""

    name: str  # which sequence: `tokens` (the one text), later `encoder`, `decoder`
    kind: str = "tokens"  # what a position is: one of `STREAM_KINDS`

    def __post_init__(self) -> None:
        if self.kind not in STREAM_KINDS:
            raise ValueError(f"stream {self.name!r}: kind {self.kind!r} is not one of {STREAM_KINDS}")


TOKENS = Stream("tokens")  # the text's tokens: both streams of today's self-attention maps
FRAMES = Stream("frames", "frames")  # an audio encoder's frames (wav2vec2, HuBERT): both streams of its maps


@dataclass(frozen=True)
class Site:
    """Where maps come from: an attention (`self`; later `encoder`, `decoder`, `cross`) and the streams it relates.

    `causal`: a target never reads a later source, so entries `j > i` are 0 by definition (and not
    stored). Only a stream read by itself has an order to respect, so only a square site is causal.
    """

    name: str
    targets: Stream  # rows
    sources: Stream  # columns
    causal: bool = False

    def __post_init__(self) -> None:
        if self.causal and not self.square:
            raise ValueError(
                f"site {self.name!r} relates {self.targets.name} to {self.sources.name}: "
                "only a stream read by itself can be causal"
            )

    @property
    def square(self) -> bool:
        """Whether rows and columns are one stream, so that its maps are square with a diagonal."""
        return self.targets == self.sources


def self_site(causal: bool, stream: Stream = TOKENS, spans: bool = False) -> Site:
    """Return a single stack's one site: its self-attention over the text's tokens (causal in decoders),
    or over an audio encoder's frames (`stream=FRAMES`). With `spans` the columns are sets of positions
    zeroed together (a `… spans` stream)."""
    if spans:
        return Site("self", stream, Stream(f"{stream.name} spans", stream.kind))
    return Site("self", stream, stream, causal)


def valid_entries(n_targets: int, n_sources: int, causal: bool) -> np.ndarray:
    """Return `[targets, sources]` bool: the entries a map can hold (causal: the lower triangle with the diagonal)."""
    _check_causal(n_targets, n_sources, causal)
    full = np.ones((n_targets, n_sources), dtype=bool)
    return np.tril(full) if causal else full


def map_entries(n_targets: int, n_sources: int, causal: bool) -> int:
    """Return how many entries of one `[targets, sources]` map are valid (see `valid_entries`)."""
    _check_causal(n_targets, n_sources, causal)
    return n_targets * (n_targets + 1) // 2 if causal else n_targets * n_sources


def _check_causal(n_targets: int, n_sources: int, causal: bool) -> None:
    if causal and n_targets != n_sources:
        raise ValueError(f"a causal map is square; got {n_targets} targets and {n_sources} sources")


def resolve_layers(layers: Sequence[int] | int | None, count: int) -> list[int]:
    """Return block indices `0..count-1` for `layers` (None: all), in the order given, without repeats.

    The one rule for layer indices everywhere (`score`, the job's `--layers`, `vz explain`, `vz show`,
    `vz query`): a layer is a block index of the model — layer `l`'s map is how block `l` mixes its
    input, the clean output of block `l-1` — and negatives count from the model's last block (-1 is
    the last). A stored subset keeps these indices (`ScoreResult.layers`, a store's `layers`).
    """
    if layers is None:
        return list(range(count))
    if isinstance(layers, int):
        layers = [layers]
    out = []
    for layer in layers:
        if not -count <= layer < count:
            raise ValueError(f"layer {layer} out of range: the model has {count} layers (0..{count - 1})")
        if layer % count not in out:
            out.append(layer % count)
    return out


def layer_position(layer: int, count: int, stored: Sequence[int], holder: str = "the maps") -> int:
    """Return where the user's `layer` (read by `resolve_layers` against `count` blocks) sits among
    `stored`, the block indices of a map stack's first axis; `holder` names that stack in the error."""
    block = resolve_layers([layer], count)[0]
    if block not in stored:
        raise ValueError(f"layer {block} is not in {holder}; it holds layers {list(stored)}")
    return list(stored).index(block)


ENCODER_TOKENS = Stream("encoder", "tokens")  # an encoder–decoder's source text tokens
ENCODER_FRAMES = Stream("encoder", "frames")  # an audio encoder's positions (after its front end)
DECODER_TOKENS = Stream("decoder", "tokens")  # an encoder–decoder's decoder input tokens


def encdec_site(name: str, audio: bool, spans: bool = False) -> Site:
    """Return an encoder–decoder site: `encoder` (self-attention over the source), `decoder` (causal
    self-attention over the decoder's tokens) or `cross` (decoder tokens reading the encoder).

    With `spans` the columns are sets of positions zeroed together (a `… spans` stream), never causal.
    """
    encoder = ENCODER_FRAMES if audio else ENCODER_TOKENS
    targets = encoder if name == "encoder" else DECODER_TOKENS
    sources = DECODER_TOKENS if name == "decoder" else encoder
    if name not in ("encoder", "decoder", "cross"):
        raise ValueError(f"unknown encoder-decoder site {name!r}; choose from: encoder, decoder, cross")
    if spans:
        return Site(name, targets, Stream(f"{sources.name} spans", sources.kind))
    return Site(name, targets, sources, causal=name == "decoder")
