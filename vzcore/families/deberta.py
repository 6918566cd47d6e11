"""DeBERTa-v2/v3 family: BERT's post-norm blocks around disentangled (content and relative-position)
attention, whose weights come back only when the model is asked for them."""

from __future__ import annotations

from typing import Any

import torch

from vzcore.families.spec import BlockShape, FamilySpec, Norm, NormKind


def _finish(layer: Any, first: list[torch.Tensor], residual: torch.Tensor) -> torch.Tensor:
    # DebertaV2Output: LayerNorm(dense(act(h)) + residual), the closing norm included
    return layer.output(layer.intermediate.intermediate_act_fn(first[0]), residual)


# The relative-position terms change only the attention weights, which are read from the model: the
# value path (value_proj, then output.dense after the weighted sum) is BERT's, so the algebra holds.
DEBERTA_V2 = FamilySpec(
    name="deberta-v2",
    model_types=("deberta-v2",),  # DeBERTa-v3 checkpoints are `deberta-v2` models
    layers="encoder.layer",
    attention="attention.self",
    value_proj="attention.self.value_proj",
    out_proj="attention.output.dense",
    first_projs=("intermediate.dense",),
    finish=_finish,
    causal=False,
    shape=BlockShape(
        after_attn_sum=Norm("attention.output.LayerNorm", NormKind.LAYER_NORM),
        after_ffn_sum=Norm("output.LayerNorm", NormKind.LAYER_NORM),
    ),
    weights_on_request=True,
)
