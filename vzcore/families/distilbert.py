"""DistilBERT family: post-norm encoder blocks like BERT's, with one attention module and a plain FFN."""

from __future__ import annotations

from typing import Any

import torch

from vzcore.families.spec import BlockShape, FamilySpec, Norm, NormKind, SplitFinish


def _rest(layer: Any, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    # TransformerBlock: output_layer_norm(lin2(act(lin1(r))) + r)
    return layer.output_layer_norm(layer.ffn.lin2(hidden) + residual)


def _activation(layer: Any) -> Any:
    return layer.ffn.activation


_finish = SplitFinish(activation=_activation, rest=_rest)  # named, not a lambda: specs pickle


DISTILBERT = FamilySpec(
    name="distilbert",
    model_types=("distilbert",),
    layers="transformer.layer",
    attention="attention",  # DistilBertSelfAttention returns (output after out_lin, weights)
    value_proj="attention.v_lin",
    out_proj="attention.out_lin",
    first_projs=("ffn.lin1",),
    finish=_finish,
    causal=False,
    shape=BlockShape(
        after_attn_sum=Norm("sa_layer_norm", NormKind.LAYER_NORM),
        after_ffn_sum=Norm("output_layer_norm", NormKind.LAYER_NORM),
    ),
    ffn_size="hidden_dim",
)
