"""OLMo 2 family: norms after each sublayer (on the attention and feed-forward outputs, before each
residual add) and none before; q/k norms inside the attention (which leave the values alone)."""

from __future__ import annotations

from dataclasses import replace

from vzcore.families.llama import LLAMA
from vzcore.families.spec import BlockShape, Norm, NormKind

OLMO2 = replace(
    LLAMA,
    name="olmo2",
    model_types=("olmo2",),
    shape=BlockShape(
        on_attn_out=Norm("post_attention_layernorm", NormKind.RMS_NORM),
        on_ffn_out=Norm("post_feedforward_layernorm", NormKind.RMS_NORM),
    ),
    first_projs=(),
    finish=None,
)
