"""Gemma family: LLaMA's block paths with Gemma's RMSNorm (`1 + γ`); Gemma 2 and 3 add norms on the
attention and feed-forward outputs (sandwich norms). Scaled embeddings, soft-capping and sliding
windows happen outside the blocks or inside the attention weights the model returns: nothing to redo."""

from __future__ import annotations

from dataclasses import replace

from vzcore.families.llama import LLAMA
from vzcore.families.spec import BlockShape, Norm, NormKind

OFFSET = NormKind.RMS_NORM_OFFSET

# Gemma 1: a pre-norm block, so the factored path applies with the offset norm kind.
GEMMA = replace(
    LLAMA,
    name="gemma",
    model_types=("gemma",),
    shape=BlockShape(before_attn=Norm("input_layernorm", OFFSET), before_ffn=Norm("post_attention_layernorm", OFFSET)),
)

# Gemma 2 and 3: a norm on each sublayer's output before its residual add. The norm on the attention
# output is not linear in the zeroed values, so value zeroing runs the block's own modules per pair.
GEMMA2 = replace(
    LLAMA,
    name="gemma2",
    model_types=("gemma2",),
    shape=BlockShape(
        before_attn=Norm("input_layernorm", OFFSET),
        on_attn_out=Norm("post_attention_layernorm", OFFSET),  # named "post attention", it is on its output
        before_ffn=Norm("pre_feedforward_layernorm", OFFSET),
        on_ffn_out=Norm("post_feedforward_layernorm", OFFSET),
    ),
    first_projs=(),
    finish=None,
)

# Gemma 3: Gemma 2's block (its sliding and global layers differ inside the attention only).
GEMMA3 = replace(GEMMA2, name="gemma3", model_types=("gemma3_text",))
