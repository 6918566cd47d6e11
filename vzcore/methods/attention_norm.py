"""Attention-norm (Kobayashi, Kuribayashi, Yokoi & Inui, EMNLP 2020): `‖Σ_h a_ij^h f^h(x_j)‖`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vzcore.batch import Batch
from vzcore.methods.registry import register_method
from vzcore.ops.pairs import attention_deltas, pair_chunks
from vzcore.ops.rollout import normalize_rows

__all__ = ["AttentionNormConfig", "attention_norm"]


@dataclass(frozen=True)
class AttentionNormConfig:
    """Attention-norm takes no options; `f^h(x_j) = (x_j W_V^h + b_V^h) W_O^h`, biases as in the model."""


@register_method("attention_norm", AttentionNormConfig)
def attention_norm(batch: Batch, config: AttentionNormConfig) -> torch.Tensor:
    """Attention-norm: the norm of each source's weighted, transformed value vector, rows normalised."""
    valid = batch.valid_pairs(batch.rows, batch.row_mask)
    b, t, n = valid.shape
    per_layer = []
    for layer in batch.layers:
        u = batch.block(layer).projected_values()
        out = torch.zeros((b, t, n), dtype=torch.float64, device=u.device)
        attn_rows = batch.attention_rows(layer, batch.rows)
        for texts, chunk in pair_chunks(b, t, n, 4 * u.shape[-1], batch.memory_budget):
            norms = attention_deltas(attn_rows[texts, :, chunk], u[texts]).double().norm(dim=-1)
            out[texts, chunk] = torch.where(valid[texts, chunk].to(out.device), norms, 0.0)
        per_layer.append(out)
    maps, _ = normalize_rows(torch.stack(per_layer, 1))
    return batch.place_rows(maps)
