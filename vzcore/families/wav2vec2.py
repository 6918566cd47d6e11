"""wav2vec2 and HuBERT: audio encoders whose blocks read the frames of a convolutional feature encoder.

The blocks come in two layouts, chosen by `config.do_stable_layer_norm`: post-norm as BERT
(`Wav2Vec2EncoderLayer`: `LN(x + attn)`, then `final_layer_norm(r + ffn(r))`; base models) and
pre-norm (`Wav2Vec2EncoderLayerStableLayerNorm`: `x + attn(LN(x))`, then `s + ffn(final_layer_norm(s))`,
with the encoder's `layer_norm` after the last block; large models). The feature encoder, the feature
projection and the positional convolution run before the first block and are not scored.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from vzcore.families.spec import BlockShape, FamilySpec, Norm, NormKind, UnsupportedModelError

LN = NormKind.LAYER_NORM


def _post_norm_finish(layer: Any, first: list[torch.Tensor], residual: torch.Tensor) -> torch.Tensor:
    ff = layer.feed_forward
    return layer.final_layer_norm(residual + ff.output_dense(ff.intermediate_act_fn(first[0])))


def _pre_norm_finish(layer: Any, first: list[torch.Tensor], residual: torch.Tensor) -> torch.Tensor:
    ff = layer.feed_forward
    return residual + ff.output_dense(ff.intermediate_act_fn(first[0]))


def _variant(config: Any) -> FamilySpec:
    """The spec of one config: pre-norm blocks where `do_stable_layer_norm`; refuses attention adapters."""
    base = HUBERT if getattr(config, "model_type", None) == "hubert" else WAV2VEC2
    if getattr(config, "adapter_attn_dim", None) is not None:
        # MMS-style adapters add a residual sublayer after the feed-forward that no block shape names
        raise UnsupportedModelError(
            f"{base.name} blocks with attention adapters (adapter_attn_dim={config.adapter_attn_dim}) are not "
            "supported: the adapter is a residual sublayer after the feed-forward that the spec does not describe"
        )
    if not getattr(config, "do_stable_layer_norm", False):
        return base
    return HUBERT_STABLE if base is HUBERT else WAV2VEC2_STABLE


def _stable(spec: FamilySpec) -> FamilySpec:
    """The pre-norm blocks of `do_stable_layer_norm=True` (registered beside the post-norm spec, so that
    `vz families` lists what each layout takes; `family_for` reaches it through the variant)."""
    return replace(
        spec,
        name=f"{spec.name}-stable",
        shape=BlockShape(before_attn=Norm("layer_norm", LN), before_ffn=Norm("final_layer_norm", LN)),
        finish=_pre_norm_finish,
        final_norm="encoder.layer_norm",
        variant=None,
    )


WAV2VEC2 = FamilySpec(
    name="wav2vec2",
    model_types=("wav2vec2",),
    layers="encoder.layers",
    attention="attention",
    value_proj="attention.v_proj",
    out_proj="attention.out_proj",
    causal=False,
    shape=BlockShape(after_attn_sum=Norm("layer_norm", LN), after_ffn_sum=Norm("final_layer_norm", LN)),
    ffn="feed_forward",
    first_projs=("feed_forward.intermediate_dense",),
    finish=_post_norm_finish,
    variant=_variant,
    audio=True,
)

HUBERT = replace(WAV2VEC2, name="hubert", model_types=("hubert",))
WAV2VEC2_STABLE = _stable(WAV2VEC2)
HUBERT_STABLE = _stable(HUBERT)
