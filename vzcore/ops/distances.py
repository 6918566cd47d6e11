"""Distances between perturbed and clean block outputs, exact for small values."""

from __future__ import annotations

from collections.abc import Callable

import torch

from vzcore.ops import kernels

__all__ = ["DISTANCES", "cosine_distance", "euclidean_distance"]


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Return `1 - cos(a, b)` over the last axis of broadcastable `a, b: [..., d]`, in float64.

    Computed as `‖â − b̂‖² / 2` of the unit vectors, which keeps distances far below float32's
    rounding (1e-7) exact, and identical vectors at exactly 0, where `1 - a·b` returns noise.
    """
    if kernels.compiled(a, b):  # two passes per row, no float64 copies of `[pairs, d]`
        return kernels.cosine_rows(a, b)
    return cosine_torch(a, b)


def cosine_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`cosine_distance` in torch passes (any device and dtype; the compiled kernel's reference)."""
    tiny = torch.finfo(torch.float64).tiny
    a_unit = a.to(torch.float64, copy=True)  # a fresh copy, normalised in place
    a_unit.div_(torch.linalg.vector_norm(a_unit, dim=-1, keepdim=True).clamp_min_(tiny))
    b_unit = b.to(torch.float64, copy=True)
    b_unit.div_(torch.linalg.vector_norm(b_unit, dim=-1, keepdim=True).clamp_min_(tiny))  # the same arithmetic
    return a_unit.sub_(b_unit).square_().sum(-1).div_(2)


def euclidean_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Return `‖a − b‖` over the last axis of broadcastable `a, b: [..., d]`, in float64."""
    if kernels.compiled(a, b):
        return kernels.euclidean_rows(a, b)
    return euclidean_torch(a, b)


def euclidean_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`euclidean_distance` in torch passes (the compiled kernel's reference)."""
    return (a.double() - b.double()).norm(dim=-1)


DISTANCES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cosine": cosine_distance,
    "euclidean": euclidean_distance,
}
