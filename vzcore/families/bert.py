"""BERT family (bert, roberta, electra, ...): post-norm encoder blocks."""

from __future__ import annotations

from typing import Any

import torch

from vzcore.families.spec import BlockShape, FamilySpec, Norm, NormKind, SplitFinish


def _rest(layer: Any, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    # BertOutput: LayerNorm(dense(act(h)) + residual), the closing norm (after_ffn_sum) included
    return layer.output(hidden, residual)


def _activation(layer: Any) -> Any:
    return layer.intermediate.intermediate_act_fn


_finish = SplitFinish(activation=_activation, rest=_rest)  # named, not a lambda: specs pickle


BERT = FamilySpec(
    name="bert",
    model_types=("bert", "roberta", "xlm-roberta", "electra", "camembert", "data2vec-text"),
    layers="encoder.layer",
    attention="attention.self",
    value_proj="attention.self.value",
    out_proj="attention.output.dense",
    first_projs=("intermediate.dense",),
    finish=_finish,
    causal=False,
    shape=BlockShape(
        after_attn_sum=Norm("attention.output.LayerNorm", NormKind.LAYER_NORM),
        after_ffn_sum=Norm("output.LayerNorm", NormKind.LAYER_NORM),
    ),
    padded_positions=("roberta", "xlm-roberta", "camembert", "data2vec-text"),
)
