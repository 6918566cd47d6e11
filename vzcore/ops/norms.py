"""Norm-based decompositions of a block's sums into per-source vectors (pure tensor math).

A block's attention sum `s_i = x_i + attn_out_i` splits exactly into one vector per source token,

    y_ij = Σ_h a_ij^h u_j^h + δ_ij x_i,      s_i = Σ_j y_ij + b_O,

and a norm applied to `s_i` is linear once its statistics are fixed, so `Norm(s_i)` splits the
same way (`γ ⊙ C y_ij / σ_i`, with `C` the centring of LayerNorm). These helpers build those
vectors for a chunk of target rows; the methods decide which norms and scores to take.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vzcore.ops.zeroing import attention_deltas

__all__ = ["inverse_scale", "l1_proportions", "norm_linear", "norm_params", "residual_vectors"]


def residual_vectors(attn_rows: torch.Tensor, u: torch.Tensor, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Return `y[b, t, j] = Σ_h a[b, h, t, j] u[b, j, h] + δ_{rows[b, t], j} x[b, rows[b, t]]`: `[b, t, n, d]`.

    `attn_rows: [b, H, t, n]` are the attention rows of targets `rows: [b, t]`, `u: [b, n, H, d]`
    the projected values and `x: [b, n, d]` the residual (the block input).
    """
    y = attention_deltas(attn_rows, u)
    b, t = rows.shape
    texts = torch.arange(b, device=y.device)[:, None].expand(b, t)
    slots = torch.arange(t, device=y.device)[None, :].expand(b, t)
    y[texts, slots, rows] += x[texts, rows]  # each (text, slot) once: no accumulation clash
    return y


def norm_params(norm: Any) -> tuple[torch.Tensor, bool, float]:
    """Return a norm module's `(γ [d], centred, ε)`: LayerNorm centres, RMSNorm does not."""
    centred = isinstance(norm, nn.LayerNorm)
    eps = norm.eps if centred else getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6))
    return norm.weight, centred, float(eps)


def inverse_scale(s: torch.Tensor, centred: bool, eps: float) -> torch.Tensor:
    """Return the norm's `1 / sqrt(var(s) + ε)` (or `1 / sqrt(mean(s²) + ε)`) of `s: [..., d]` as `[..., 1]` (float64).

    This is the model's own normalisation (ε inside the square root), taken from the clean sum.
    """
    s = s.double()
    if centred:
        s = s - s.mean(-1, keepdim=True)
    return torch.rsqrt(s.square().mean(-1, keepdim=True) + eps)


def norm_linear(v: torch.Tensor, weight: torch.Tensor, inv: torch.Tensor, centred: bool) -> torch.Tensor:
    """Return the norm's linear part `γ ⊙ C v · inv` of vectors `v: [..., d]` (float64); β is not a source's."""
    v = v.double()
    if centred:
        v = v - v.mean(-1, keepdim=True)
    return v * inv * weight.double()


def l1_proportions(parts: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """Return `max(0, ‖total‖₁ − ‖total − part‖₁)` over the last axis (ALTI's contribution; float64).

    `parts: [..., d]` and `total` broadcast against each other.
    """
    total = total.double()
    return (total.abs().sum(-1) - (total - parts.double()).abs().sum(-1)).clamp_min(0.0)
