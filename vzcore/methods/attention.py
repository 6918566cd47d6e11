"""Attention-weight baselines: raw attention and attention rollout (Abnar & Zuidema 2020)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vzcore.batch import Batch
from vzcore.methods.registry import register_method
from vzcore.ops.rollout import rollout

__all__ = ["AttentionConfig", "attention", "attention_rollout"]


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


@register_method("attention_rollout", AttentionConfig, needs_all_rows=True)
def attention_rollout(batch: Batch, config: AttentionConfig) -> torch.Tensor:
    """Attention rollout: `R^l = (0.5 A^l + 0.5 I) R^{l-1}`, rows renormalised."""
    full = batch.all_rows()
    maps = full.place_rows(_head_mean(full, list(range(max(batch.layers) + 1)), full.rows))
    rolled = []
    for k in range(maps.shape[0]):
        n = int(batch.lengths[k])
        m = torch.zeros_like(maps[k])
        m[:, :n, :n] = rollout(maps[k, :, :n, :n], identity_weight=0.5)
        rolled.append(m)
    return batch.select_rolled(torch.stack(rolled))
