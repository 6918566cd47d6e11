"""ModernBERT family: an encoder with pre-norm blocks (the first block's attention norm is the
identity), a fused `Wqkv` (`[q | k | v]`), a fused gated `Wi` (`[input | gate]`) and alternating
local (sliding-window) and global attention, inside the attention weights the model returns.

Value zeroing takes the generic path: the factored one is exact in algebra too, but on ModernBERT's
weights its cancellations cost float32 digits (up to 2e-5 against the reference on the tiny model,
where the generic path stays under 1e-5)."""

from __future__ import annotations

from vzcore.families.spec import BlockShape, FamilySpec, Norm, NormKind

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
    final_norm="final_norm",
    fused_qkv=True,
)
