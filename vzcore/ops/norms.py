"""Norms as linear maps, and the norm-based decompositions of a block's sums into per-source vectors.

A block's attention sum `s_i = x_i + attn_out_i` splits exactly into one vector per source token,

    y_ij = Σ_h a_ij^h u_j^h + δ_ij x_i,      s_i = Σ_j y_ij + b_O,

and a norm applied to `s_i` is linear once its statistics are fixed, so `Norm(s_i)` splits the
same way (`scale ⊙ C y_ij / σ_i`, with `C` the centring of LayerNorm). These helpers build those
vectors for a chunk of target rows; the methods decide which norms and scores to take.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from vzcore.families import Norm, NormKind
from vzcore.ops.pairs import attention_deltas

__all__ = ["NormParams", "l1_proportions", "norm_eps", "residual_vectors"]


def norm_eps(module: Any) -> float:
    """Return a norm module's ε, by one rule: `variance_epsilon` where it has one (LLaMA's RMSNorm and
    its copies), else `eps` (torch's LayerNorm, Gemma's RMSNorm). A module with neither is refused:
    a guessed ε would give plausible, wrong statistics."""
    for name in ("variance_epsilon", "eps"):
        eps = getattr(module, name, None)
        if isinstance(eps, int | float):
            return float(eps)
    raise TypeError(f"{type(module).__name__} has neither `variance_epsilon` nor `eps`: cannot read its ε")


@dataclass(frozen=True)
class NormParams:
    """A norm by its kind and parameters: `Norm(s) = scale ⊙ C s · inv(s) + bias`, with
    `inv(s) = 1 / sqrt(mean((C s)²) + ε)` and `C` the centring (LayerNorm only)."""

    kind: NormKind
    scale: torch.Tensor  # `[d]`: γ, or `1 + γ` for the offset kind
    bias: torch.Tensor | None  # β `[d]`: LayerNorm's, where it has one
    eps: float

    @classmethod
    def of(cls, norm: Norm, module: Any) -> NormParams:
        """Read the parameters of `module`, the norm that `norm` (its position's entry in a spec) names."""
        scale = module.weight + 1 if norm.kind is NormKind.RMS_NORM_OFFSET else module.weight
        bias = getattr(module, "bias", None) if norm.kind is NormKind.LAYER_NORM else None
        return cls(norm.kind, scale, bias, norm_eps(module))

    @property
    def centred(self) -> bool:
        return self.kind is NormKind.LAYER_NORM

    def centre(self, v: torch.Tensor) -> torch.Tensor:
        """Return `C v` for `v: [..., d]`: minus its mean for LayerNorm, unchanged for RMSNorm."""
        return v - v.mean(-1, keepdim=True) if self.centred else v

    def inverse_scale(self, s: torch.Tensor) -> torch.Tensor:
        """Return `1 / sqrt(mean((C s)²) + ε)` of inputs `s: [..., d]` as `[..., 1]`, in `s`'s dtype
        (the model's own normalisation: ε inside the square root)."""
        return torch.rsqrt(self.centre(s).pow(2).mean(-1, keepdim=True) + self.eps)

    def linear(self, v: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
        """Return the linear part `scale ⊙ C v · inv` of vectors `v: [..., d]` at fixed statistics `inv`."""
        return self.centre(v) * inv * self.scale.to(v.dtype)

    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        """Return the norm of `s: [..., d]`, as the module computes it."""
        out = self.linear(s, self.inverse_scale(s))
        return out if self.bias is None else out + self.bias.to(s.dtype)


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


def l1_proportions(parts: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """Return `max(0, ‖total‖₁ − ‖total − part‖₁)` over the last axis (ALTI's contribution; float64).

    `parts: [..., d]` and `total` broadcast against each other.
    """
    total = total.double()
    return (total.abs().sum(-1) - (total - parts.double()).abs().sum(-1)).clamp_min(0.0)
