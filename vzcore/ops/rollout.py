"""Row normalisation and cross-layer rollout of `[layers, n, n]` maps."""

from __future__ import annotations

import torch

__all__ = ["normalize_rows", "rollout", "rollout_step"]


def normalize_rows(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide each row of `c: [..., n, n]` by its sum; return `(maps, zero_rows)`.

    A row whose entries sum to zero stays all zeros (never NaN) and is flagged in `zero_rows: [..., n]`.
    NaN rows (unscored) stay NaN.
    """
    total = c.sum(-1, keepdim=True)
    zero = total == 0
    out = torch.where(zero, torch.zeros_like(c), c / torch.where(zero, torch.ones_like(total), total))
    return out, zero.squeeze(-1)


def rollout_step(acc: torch.Tensor | None, m: torch.Tensor, identity_weight: float = 0.0) -> torch.Tensor:
    """Return `R^l = M^l @ R^{l-1}` from `acc = R^{l-1}` (None before the first layer) and `m = M^l: [n, n]`.

    With `identity_weight = w > 0`, `M` is first mixed as `(1 - w) M + w I` and its rows
    renormalised (attention rollout uses `w = 0.5`); value zeroing uses `w = 0`. One layer at a
    time, so a caller that gets a layer's maps as it is scored holds one product, not every layer.
    """
    if identity_weight:
        eye = torch.eye(m.shape[-1], dtype=m.dtype, device=m.device)
        m = (1 - identity_weight) * m + identity_weight * eye
        m = m / m.sum(-1, keepdim=True)
    return m if acc is None else m @ acc


def rollout(maps: torch.Tensor, identity_weight: float = 0.0) -> torch.Tensor:
    """Roll `maps: [layers, n, n]` across layers: `R^1 = M^1`, `R^l = M^l @ R^{l-1}` (see `rollout_step`)."""
    out = torch.empty_like(maps)
    acc = None
    for layer in range(maps.shape[0]):
        acc = rollout_step(acc, maps[layer], identity_weight)
        out[layer] = acc
    return out
