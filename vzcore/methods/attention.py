"""Attention-weight baselines: raw attention and attention rollout (Abnar & Zuidema 2020)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vzcore.batch import Batch
from vzcore.methods.registry import register_method, register_rollout

__all__ = ["AttentionConfig", "attention"]


@dataclass(frozen=True)
class AttentionConfig:
    """Raw attention takes no options: the head mean of the model's own weights."""


def _head_mean(batch: Batch, layers: list[int], rows: torch.Tensor) -> torch.Tensor:
    """Return head-mean attention of target `rows` for `layers`: `[b, L, t, n]` (float64)."""
    return torch.stack([batch.attention_rows(layer, rows).double().mean(1) for layer in layers], 1)


@register_method("attention", AttentionConfig)
def attention(batch: Batch, config: AttentionConfig) -> torch.Tensor:
    """Raw attention: the head-mean attention weight `mean_h a_ij^h`."""
    return batch.place_rows(_head_mean(batch, batch.layers, batch.rows))


register_rollout(
    "attention_rollout",
    "attention",
    "Attention rollout: `R^l = (0.5 A^l + 0.5 I) R^{l-1}`, rows renormalised.",
    identity_weight=0.5,
)
