"""Row normalisation and cross-layer rollout of `[layers, n, n]` maps."""

from __future__ import annotations

import torch

__all__ = ["normalize_rows", "rollout"]


def normalize_rows(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide each row of `c: [..., n, n]` by its sum; return `(maps, zero_rows)`.

    A row whose entries sum to zero stays all zeros (never NaN) and is flagged in `zero_rows: [..., n]`.
    NaN rows (unscored) stay NaN.
    """
    total = c.sum(-1, keepdim=True)
    zero = total == 0
    out = torch.where(zero, torch.zeros_like(c), c / torch.where(zero, torch.ones_like(total), total))
    return out, zero.squeeze(-1)


def rollout(maps: torch.Tensor, identity_weight: float = 0.0) -> torch.Tensor:
    """Roll `maps: [layers, n, n]` across layers: `R^1 = M^1`, `R^l = M^l @ R^{l-1}`.

    With `identity_weight = w > 0`, each layer is first mixed as `(1 - w) M + w I` and its rows
    renormalised (attention rollout uses `w = 0.5`); value zeroing uses `w = 0`.
    """
    n = maps.shape[-1]
    eye = torch.eye(n, dtype=maps.dtype, device=maps.device)
    out = torch.empty_like(maps)
    acc = None
    for layer in range(maps.shape[0]):
        m = maps[layer]
        if identity_weight:
            m = (1 - identity_weight) * m + identity_weight * eye
            m = m / m.sum(-1, keepdim=True)
        acc = m if acc is None else m @ acc
        out[layer] = acc
    return out
