"""GPT-2 family: pre-norm decoder blocks with a fused `c_attn` (q, k, v) projection."""

from __future__ import annotations

from typing import Any

import torch

from vzcore.families.spec import BlockShape, FamilySpec, Norm, NormKind


def _finish(layer: Any, first: list[torch.Tensor], residual: torch.Tensor) -> torch.Tensor:
    mlp = layer.mlp
    return residual + mlp.dropout(mlp.c_proj(mlp.act(first[0])))


GPT2 = FamilySpec(
    name="gpt2",
    model_types=("gpt2",),
    layers="h",
    attention="attn",
    value_proj="attn.c_attn",
    out_proj="attn.c_proj",
    first_projs=("mlp.c_fc",),
    finish=_finish,
    causal=True,
    shape=BlockShape(
        before_attn=Norm("ln_1", NormKind.LAYER_NORM),
        before_ffn=Norm("ln_2", NormKind.LAYER_NORM),
    ),
    final_norm="ln_f",
    fused_qkv=True,
    ffn_size="n_inner",
)
