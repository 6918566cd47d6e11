"""Distances between perturbed and clean block outputs, exact for small values."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["DISTANCES", "cosine_distance", "euclidean_distance"]


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Return `1 - cos(a, b)` over the last axis of broadcastable `a, b: [..., d]`, in float64.

    Computed as `‖â − b̂‖² / 2` of the unit vectors, which keeps distances far below float32's
    rounding (1e-7) exact instead of returning noise from `1 - a·b`.
    """
    a = a.double()
    b = b.double()
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    return (a - b).pow(2).sum(-1) / 2


def euclidean_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Return `‖a − b‖` over the last axis of broadcastable `a, b: [..., d]`, in float64."""
    return (a.double() - b.double()).norm(dim=-1)


DISTANCES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cosine": cosine_distance,
    "euclidean": euclidean_distance,
}
