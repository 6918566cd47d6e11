"""Parallel decoders (GPT-NeoX/Pythia, GPT-J, Phi-1/2): attention and feed-forward both read the block
input, `y = x + attention(ln(x)) + ffn(ln'(x))`. Zeroing a source's values changes the attention
term only, so value zeroing takes `y_i − Δ_ij` with no feed-forward per pair at all."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from vzcore.families.spec import BlockShape, FamilySpec, Norm, NormKind

LN = NormKind.LAYER_NORM


def _neox_finish(layer: Any, first: list[torch.Tensor], residual: torch.Tensor) -> torch.Tensor:
    mlp = layer.mlp
    return residual + mlp.dense_4h_to_h(mlp.act(first[0]))


def _neox_variant(config: Any) -> FamilySpec:
    """GPT-NeoX with `use_parallel_residual=False` is an ordinary pre-norm block (factored path)."""
    if getattr(config, "use_parallel_residual", True):
        return GPT_NEOX
    return replace(
        GPT_NEOX,
        shape=replace(GPT_NEOX.shape, parallel=False),
        first_projs=("mlp.dense_h_to_4h",),
        finish=_neox_finish,
    )


GPT_NEOX = FamilySpec(
    name="gpt_neox",
    model_types=("gpt_neox",),
    layers="layers",
    attention="attention",
    value_proj="attention.query_key_value",
    out_proj="attention.dense",
    causal=True,
    # two norms, both on the block input
    shape=BlockShape(
        before_attn=Norm("input_layernorm", LN), before_ffn=Norm("post_attention_layernorm", LN), parallel=True
    ),
    final_norm="final_layer_norm",
    qkv_per_head=True,
    variant=_neox_variant,
)

GPTJ = FamilySpec(
    name="gptj",
    model_types=("gptj",),
    layers="h",
    attention="attn",
    value_proj="attn.v_proj",
    out_proj="attn.out_proj",
    causal=True,
    shape=BlockShape(before_attn=Norm("ln_1", LN), parallel=True),  # one norm read by both
    final_norm="ln_f",
    ffn_size="n_inner",
)

PHI = FamilySpec(
    name="phi",
    model_types=("phi",),
    layers="layers",
    attention="self_attn",
    value_proj="self_attn.v_proj",
    out_proj="self_attn.dense",
    causal=True,
    shape=BlockShape(before_attn=Norm("input_layernorm", LN), parallel=True),  # one norm read by both
    final_norm="final_layernorm",
)
