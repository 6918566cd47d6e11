"""ModernBERT family: an encoder with pre-norm blocks (the first block's attention norm is the
identity), a fused `Wqkv` (`[q | k | v]`), a fused gated `Wi` (`[input | gate]`) and alternating
local (sliding-window) and global attention, inside the attention weights the model returns."""

from __future__ import annotations

from typing import Any

import torch

from vzcore.families.spec import BlockShape, FamilySpec, Norm, NormKind


def _finish(layer: Any, first: list[torch.Tensor], residual: torch.Tensor) -> torch.Tensor:
    mlp = layer.mlp
    value, gate = first[0].chunk(2, dim=-1)
    return residual + mlp.Wo(mlp.drop(mlp.act(value) * gate))


MODERNBERT = FamilySpec(
    name="modernbert",
    model_types=("modernbert",),
    layers="layers",
    attention="attn",
    value_proj="attn.Wqkv",
    out_proj="attn.Wo",
    causal=False,
    shape=BlockShape(
        before_attn=Norm("attn_norm", NormKind.LAYER_NORM), before_ffn=Norm("mlp_norm", NormKind.LAYER_NORM)
    ),
    first_projs=("mlp.Wi",),
    finish=_finish,
    final_norm="final_norm",
    fused_qkv=True,
)
