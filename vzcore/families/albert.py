"""ALBERT family: post-norm encoder blocks, one layer's weights shared by every layer.

ALBERT keeps `num_hidden_groups` layer groups (one in every released checkpoint) and runs group
⌊i · groups / layers⌋ as layer i, as its own encoder does; each run is scored as its own layer, so
layer i's map is the i-th application of the shared block (vzcore.capture.LayerOrder counts them).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vzcore.families.spec import BlockShape, FamilySpec, Norm, NormKind


def _finish(layer: Any, first: list[torch.Tensor], residual: torch.Tensor) -> torch.Tensor:
    # AlbertLayer: full_layer_layer_norm(ffn_output(act(ffn(r))) + r)
    return layer.full_layer_layer_norm(layer.ffn_output(layer.activation(first[0])) + residual)


def _layer_modules(model: Any) -> list[nn.Module]:
    config, groups = model.config, model.encoder.albert_layer_groups
    if config.inner_group_num != 1:
        # several layers inside one group run would be one "block" of two attentions: no exact algebra
        raise ValueError(f"ALBERT with inner_group_num={config.inner_group_num} is not supported (only 1)")
    per_group = config.num_hidden_layers / config.num_hidden_groups
    return [groups[int(i / per_group)].albert_layers[0] for i in range(config.num_hidden_layers)]


ALBERT = FamilySpec(
    name="albert",
    model_types=("albert",),
    layers="encoder.albert_layer_groups",  # the groups; `layer_modules` gives the layer each run uses
    attention="attention",  # AlbertAttention: (LayerNorm(x + dense(attention)), weights)
    value_proj="attention.value",
    out_proj="attention.dense",
    first_projs=("ffn",),
    finish=_finish,
    causal=False,
    shape=BlockShape(
        after_attn_sum=Norm("attention.LayerNorm", NormKind.LAYER_NORM),
        after_ffn_sum=Norm("full_layer_layer_norm", NormKind.LAYER_NORM),
    ),
    layer_modules=_layer_modules,
)
