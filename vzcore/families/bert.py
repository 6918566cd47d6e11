"""BERT family (bert, roberta, electra, ...): post-norm encoder blocks."""

from __future__ import annotations

from typing import Any

import torch

from vzcore.families.spec import FamilySpec


def _finish(layer: Any, first: list[torch.Tensor], residual: torch.Tensor) -> torch.Tensor:
    # BertOutput: LayerNorm(dense(act(h)) + residual)
    return layer.output(layer.intermediate.intermediate_act_fn(first[0]), residual)


BERT = FamilySpec(
    name="bert",
    model_types=("bert", "roberta", "xlm-roberta", "electra", "camembert", "data2vec-text"),
    layers="encoder.layer",
    attention="attention.self",
    value_proj="attention.self.value",
    out_proj="attention.output.dense",
    mix_norm="attention.output.LayerNorm",
    first_projs=("intermediate.dense",),
    finish=_finish,
    causal=False,
    post_norm=True,
    padded_positions=("roberta", "xlm-roberta", "camembert", "data2vec-text"),
    out_norm="output.LayerNorm",
)
