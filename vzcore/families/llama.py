"""LLaMA family (llama, mistral, qwen2, qwen3): pre-norm decoder blocks, RMSNorm, gated MLP, GQA.
(Qwen3's q/k norms sit inside the attention, which value zeroing leaves as it is.)"""

from __future__ import annotations

from typing import Any

import torch

from vzcore.families.spec import BlockShape, FamilySpec, Norm, NormKind, SplitFinish


def _rest(layer: Any, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    return residual + layer.mlp.down_proj(hidden)


# residual + down_proj(act_fn(gate) * up)
def _activation(layer: Any) -> Any:
    return layer.mlp.act_fn


_finish = SplitFinish(activation=_activation, rest=_rest, gated=True)  # named, not a lambda: specs pickle


LLAMA = FamilySpec(
    name="llama",
    model_types=("llama", "mistral", "qwen2", "qwen3"),
    layers="layers",
    attention="self_attn",
    value_proj="self_attn.v_proj",
    out_proj="self_attn.o_proj",
    first_projs=("mlp.gate_proj", "mlp.up_proj"),
    finish=_finish,
    causal=True,
    shape=BlockShape(
        before_attn=Norm("input_layernorm", NormKind.RMS_NORM),
        # named "post attention" in the model, it sits before the feed-forward
        before_ffn=Norm("post_attention_layernorm", NormKind.RMS_NORM),
    ),
    final_norm="norm",
)
