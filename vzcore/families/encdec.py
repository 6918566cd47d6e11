"""Encoder–decoder families as data: each stack's blocks as a sequence of residual sublayers.

A block of either stack computes, sublayer by sublayer (an absent norm is the identity):
`h = after(h + f(before(h)))`, with `f` a self-attention, a cross-attention to the encoder's output, or
the feed-forward. Pre-norm stacks (T5, mBART, Whisper) have only `before` norms; post-norm ones (BART,
Marian) only `after` norms. Value zeroing corrects one attention sublayer's output and runs the
sublayers after it through the model's own modules (`vzcore.ops.sites`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import nn

from vzcore.families.spec import FinishFn, Norm, NormKind, UnsupportedModelError

__all__ = [
    "SITE_NAMES",
    "EncDecSpec",
    "StackSpec",
    "Sublayer",
    "encdec_family_for",
    "encdec_specs",
]

SublayerKind = Literal["self", "cross", "ffn"]
SITE_NAMES = ("encoder", "decoder", "cross")  # encoder self-attention, decoder self-attention, cross-attention

# ffn(block, normed input `[..., d]`) -> the feed-forward's output `[..., d]` (no residual), by the block's modules
FfnFn = Callable[[Any, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Sublayer:
    """One residual sublayer of a block: its module and the norms around it."""

    kind: SublayerKind
    path: str  # the attention module (relative to the block), or "" for the family's feed-forward
    before: Norm | None = None  # on the sublayer's input (pre-norm)
    after: Norm | None = None  # on the residual sum (post-norm)


@dataclass(frozen=True)
class StackSpec:
    """One stack (encoder or decoder): where its blocks live and what each block runs."""

    layers: str  # the block list, relative to the stack module (`model.get_encoder()` / `get_decoder()`)
    sublayers: tuple[Sublayer, ...]
    # The feed-forward's input projections (one, or gate and up), relative to the block: where a site's
    # attention is followed by the feed-forward alone, they are factored through its norm (the factored path)
    first_projs: tuple[str, ...] = ()

    def sublayer(self, kind: SublayerKind) -> int:
        """Return the index of the sublayer of `kind` (each block has at most one of each)."""
        for k, s in enumerate(self.sublayers):
            if s.kind == kind:
                return k
        raise ValueError(f"this stack's blocks have no {kind} sublayer")


@dataclass(frozen=True)
class EncDecSpec:
    """One encoder–decoder family: its two stacks, its attention modules' inner names, its feed-forward."""

    name: str
    model_types: tuple[str, ...]
    encoder: StackSpec
    decoder: StackSpec
    ffn: FfnFn
    value: str = "v_proj"  # the value projection, relative to an attention module
    out: str = "out_proj"  # the attention output projection (W_O), relative to an attention module
    weights_index: int = 1  # where an attention module's output tuple holds its weights
    audio: bool = False  # the encoder reads audio features (frames), not token ids
    # finish(block, first projections, residual) -> block output: the rest of the block after the
    # feed-forward's input projections (`vzcore.families.spec.FinishFn`), for the factored path
    finish: FinishFn | None = None
    # the spec for one Hugging Face config, where a config field changes the block (T5's gated feed-forward)
    variant: Callable[[Any], EncDecSpec] | None = None

    def stack(self, site: str) -> StackSpec:
        """Return the stack a site's attention lives in."""
        return self.encoder if site == "encoder" else self.decoder

    def site_sublayer(self, site: str) -> int:
        """Return the index, in its stack's blocks, of the sublayer whose values a site zeroes."""
        if site not in SITE_NAMES:
            raise ValueError(f"unknown site {site!r}; choose from: {', '.join(SITE_NAMES)}")
        return self.stack(site).sublayer("cross" if site == "cross" else "self")

    def stack_module(self, model: nn.Module, site: str) -> nn.Module:
        get: Any = model.get_encoder if site == "encoder" else model.get_decoder
        return get()

    def blocks(self, model: nn.Module, site: str) -> nn.ModuleList:
        """Return the blocks of the stack that holds `site`."""
        found = self.stack_module(model, site).get_submodule(self.stack(site).layers)
        assert isinstance(found, nn.ModuleList)
        return found


def _fc_ffn(block: Any, h: torch.Tensor) -> torch.Tensor:
    # BART, Marian, mBART, Whisper: fc1 and fc2 sit on the block itself
    return block.fc2(block.activation_fn(block.fc1(h)))


def _fc_finish(block: Any, first: list[torch.Tensor], residual: torch.Tensor) -> torch.Tensor:
    return residual + block.fc2(block.activation_fn(first[0]))


def _fc_post_norm_finish(block: Any, first: list[torch.Tensor], residual: torch.Tensor) -> torch.Tensor:
    return block.final_layer_norm(_fc_finish(block, first, residual))


def _t5_ffn(block: Any, h: torch.Tensor) -> torch.Tensor:
    # T5LayerFF: the dense (or gated) feed-forward inside the block's last sublayer
    return block.layer[-1].DenseReluDense(h)


def _t5_finish(block: Any, first: list[torch.Tensor], residual: torch.Tensor) -> torch.Tensor:
    ff = block.layer[-1].DenseReluDense
    hidden = ff.act(first[0]) if len(first) == 1 else ff.act(first[0]) * first[1]  # gated: act(wi_0 h) ⊙ wi_1 h
    return residual + ff.wo(hidden.to(ff.wo.weight.dtype))


LN, RMS = NormKind.LAYER_NORM, NormKind.RMS_NORM


def _t5_stack(decoder: bool, gated: bool = False) -> StackSpec:
    ffn = 2 if decoder else 1
    subs = [Sublayer("self", "layer.0.SelfAttention", before=Norm("layer.0.layer_norm", RMS))]
    if decoder:
        subs.append(Sublayer("cross", "layer.1.EncDecAttention", before=Norm("layer.1.layer_norm", RMS)))
    subs.append(Sublayer("ffn", "", before=Norm(f"layer.{ffn}.layer_norm", RMS)))
    projs = ("wi_0", "wi_1") if gated else ("wi",)
    return StackSpec("block", tuple(subs), tuple(f"layer.{ffn}.DenseReluDense.{p}" for p in projs))


def _t5_variant(config: Any) -> EncDecSpec:
    """T5 v1.1 and mT5 (`feed_forward_proj="gated-gelu"`) gate their feed-forward: two input projections."""
    if not getattr(config, "is_gated_act", False):
        return T5
    return replace(T5, encoder=_t5_stack(False, gated=True), decoder=_t5_stack(True, gated=True))


# T5 and mT5: pre-norm RMSNorm blocks; relative position bias lives inside the attention weights.
T5 = EncDecSpec(
    name="t5",
    model_types=("t5", "mt5"),
    encoder=_t5_stack(False),
    decoder=_t5_stack(True),
    ffn=_t5_ffn,
    value="v",
    out="o",
    weights_index=2,  # T5Attention returns (output, position_bias, weights)
    finish=_t5_finish,
    variant=_t5_variant,
)


def _fc_stack(decoder: bool, pre_norm: bool) -> StackSpec:
    def norms(path: str) -> dict[str, Norm]:
        return {"before" if pre_norm else "after": Norm(path, LN)}

    subs = [Sublayer("self", "self_attn", **norms("self_attn_layer_norm"))]
    if decoder:
        subs.append(Sublayer("cross", "encoder_attn", **norms("encoder_attn_layer_norm")))
    subs.append(Sublayer("ffn", "", **norms("final_layer_norm")))
    return StackSpec("layers", tuple(subs), ("fc1",))


# BART and Marian: post-norm LayerNorm blocks.
BART = EncDecSpec(
    name="bart",
    model_types=("bart", "marian"),
    encoder=_fc_stack(False, pre_norm=False),
    decoder=_fc_stack(True, pre_norm=False),
    ffn=_fc_ffn,
    finish=_fc_post_norm_finish,
)

# mBART: BART's modules in pre-norm blocks (and a final norm per stack, outside the blocks).
MBART = EncDecSpec(
    name="mbart",
    model_types=("mbart",),
    encoder=_fc_stack(False, pre_norm=True),
    decoder=_fc_stack(True, pre_norm=True),
    ffn=_fc_ffn,
    finish=_fc_finish,
)

# Whisper: a convolutional front end (outside the blocks) before pre-norm encoder blocks over audio
# frames; a pre-norm text decoder with cross-attention to them.
WHISPER = replace(MBART, name="whisper", model_types=("whisper",), audio=True)

_ENCDEC: tuple[EncDecSpec, ...] = (T5, BART, MBART, WHISPER)


def encdec_specs() -> tuple[EncDecSpec, ...]:
    """Return every registered encoder–decoder family's spec."""
    return _ENCDEC


def encdec_family_for(config: Any) -> EncDecSpec:
    """Return the encoder–decoder spec for a Hugging Face `config`, or raise listing the supported ones."""
    model_type = getattr(config, "model_type", None)
    for spec in _ENCDEC:
        if model_type in spec.model_types:
            return spec.variant(config) if spec.variant else spec
    supported = ", ".join(t for s in _ENCDEC for t in s.model_types)
    raise UnsupportedModelError(
        f"unsupported encoder-decoder model type {model_type!r}; supported encoder-decoder types: {supported}"
    )
