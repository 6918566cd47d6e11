"""OPT family: pre-norm decoder blocks with LayerNorm and a plain feed-forward (`fc1`, `fc2` on the
block itself); OPT-350m (`do_layer_norm_before=False`) is post-norm, as BERT."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from vzcore.families.spec import BlockShape, FamilySpec, Norm, NormKind, SplitFinish

LN = NormKind.LAYER_NORM


def _rest(layer: Any, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    return residual + layer.fc2(hidden)


def _post_norm_rest(layer: Any, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    return layer.final_layer_norm(_rest(layer, hidden, residual))


def _activation(layer: Any) -> Any:
    return layer.activation_fn


_finish = SplitFinish(activation=_activation, rest=_rest)
_post_norm_finish = SplitFinish(activation=_activation, rest=_post_norm_rest)


def _variant(config: Any) -> FamilySpec:
    """OPT with `do_layer_norm_before=False` closes each sum with a norm (and has no final norm)."""
    if getattr(config, "do_layer_norm_before", True):
        return OPT
    return replace(
        OPT,
        shape=BlockShape(after_attn_sum=Norm("self_attn_layer_norm", LN), after_ffn_sum=Norm("final_layer_norm", LN)),
        finish=_post_norm_finish,
        final_norm=None,
    )


OPT = FamilySpec(
    name="opt",
    model_types=("opt",),
    layers="decoder.layers",
    attention="self_attn",
    value_proj="self_attn.v_proj",
    out_proj="self_attn.out_proj",
    causal=True,
    shape=BlockShape(before_attn=Norm("self_attn_layer_norm", LN), before_ffn=Norm("final_layer_norm", LN)),
    ffn=None,  # no feed-forward module: fc1 and fc2 sit on the block (the factored path reads them)
    first_projs=("fc1",),
    finish=_finish,
    final_norm="decoder.final_layer_norm",
    ffn_size="ffn_dim",
    variant=_variant,
)
