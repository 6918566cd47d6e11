"""Phi-3 family: LLaMA-like pre-norm blocks with a fused `qkv_proj` (`[q | k | v]`) and a fused
`gate_up_proj` (`[gate | up]`), factored as one input projection."""

from __future__ import annotations

from typing import Any

import torch

from vzcore.families.spec import BlockShape, FamilySpec, Norm, NormKind


def _finish(layer: Any, first: list[torch.Tensor], residual: torch.Tensor) -> torch.Tensor:
    mlp = layer.mlp
    gate, up = first[0].chunk(2, dim=-1)
    return residual + mlp.down_proj(up * mlp.activation_fn(gate))


PHI3 = FamilySpec(
    name="phi3",
    model_types=("phi3",),
    layers="layers",
    attention="self_attn",
    value_proj="self_attn.qkv_proj",
    out_proj="self_attn.o_proj",
    causal=True,
    shape=BlockShape(
        before_attn=Norm("input_layernorm", NormKind.RMS_NORM),
        before_ffn=Norm("post_attention_layernorm", NormKind.RMS_NORM),
    ),
    first_projs=("mlp.gate_up_proj",),
    finish=_finish,
    final_norm="norm",
    fused_qkv=True,
)
