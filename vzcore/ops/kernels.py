"""Compiled per-pair passes of the fast path (numba, when installed): each fuses what torch runs as
several elementwise passes over `[pairs, d]` rows, each pass writing a fresh temporary.

They run on CPU float32 rows only; every caller keeps the torch arithmetic as its fallback (other
devices and dtypes, or numba absent), and the tests hold each kernel to that arithmetic. Set
`VZ_KERNELS=0` to use the torch passes everywhere.

Numba compiles each kernel once per machine (`cache=True`: a few seconds the first time, then
loaded from its cache in about a second per process).
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np
import torch

__all__ = ["compiled", "cosine_rows", "euclidean_rows"]


def _inverse_norms(x, out):  # pragma: no cover - compiled
    # x: `[R, d]` float32; out: `[R]` float64 `1 / max(‖x_r‖, tiny)`, the norm summed in float64
    tiny = np.finfo(np.float64).tiny
    for r in range(x.shape[0]):
        s = 0.0
        for k in range(x.shape[1]):
            v = np.float64(x[r, k])
            s += v * v
        out[r] = 1.0 / max(math.sqrt(s), tiny)


def _cosine_rows(a, inv_a, b, inv_b, index, out):  # pragma: no cover - compiled
    # `‖â − b̂‖² / 2` with `â = a · inv_a` (`_inverse_norms`: a row and its copy get the same inverse,
    # and no product is contracted into a fused multiply-add, so identical rows give exactly 0)
    for r in range(a.shape[0]):
        q = index[r]
        ia, ib = inv_a[r], inv_b[q]
        s = 0.0
        for k in range(a.shape[1]):
            diff = np.float64(a[r, k]) * ia - np.float64(b[q, k]) * ib
            s += diff * diff
        out[r] = s / 2


def _euclidean_rows(a, b, index, out):  # pragma: no cover - compiled
    # a: `[R, d]`, b: `[Q, d]` float32; out: `[R]` float64 `‖a_r − b_index[r]‖`
    for r in range(a.shape[0]):
        q = index[r]
        s = 0.0
        for k in range(a.shape[1]):
            diff = np.float64(a[r, k]) - np.float64(b[q, k])
            s += diff * diff
        out[r] = math.sqrt(s)


@functools.cache
def _compiled() -> dict | None:
    if os.environ.get("VZ_KERNELS", "1") == "0":
        return None
    try:
        import numba
    except ImportError:
        return None
    # Reassociation lets the float64 sums vectorise (their order then depends on the row length only,
    # not on the data or where it sits); no contraction into fused multiply-adds (see `_cosine_rows`).
    jit = numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz"})
    return {f.__name__: jit(f) for f in (_inverse_norms, _cosine_rows, _euclidean_rows)}


def compiled(*tensors: torch.Tensor) -> bool:
    """Return whether the compiled kernels apply to `tensors`: numba is there, and they are CPU float32."""
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors) and _compiled() is not None


def _rows_of(a: torch.Tensor, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...]]:
    """`a` broadcast to the common shape as `[R, d]` rows, `b`'s own rows `[Q, d]`, and the row of `b`
    each row of `a` meets (`[R]`), without materialising the broadcast `b`."""
    shape = torch.broadcast_shapes(a.shape, b.shape)
    a_rows = a.detach().expand(shape).reshape(-1, shape[-1]).contiguous()
    b_rows = b.detach().reshape(-1, b.shape[-1]).contiguous()
    index = torch.arange(b_rows.shape[0]).view(b.shape[:-1]).expand(shape[:-1]).reshape(-1)
    return a_rows.numpy(), b_rows.numpy(), index.numpy(), tuple(shape[:-1])


def cosine_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Return `‖â − b̂‖² / 2` over the last axis of broadcastable CPU float32 `a, b` (compiled)."""
    kernels = _compiled()
    assert kernels is not None
    a_rows, b_rows, index, shape = _rows_of(a, b)
    inv_a, inv_b = np.empty(a_rows.shape[0]), np.empty(b_rows.shape[0])
    kernels["_inverse_norms"](a_rows, inv_a)
    kernels["_inverse_norms"](b_rows, inv_b)
    out = np.empty(a_rows.shape[0], dtype=np.float64)
    kernels["_cosine_rows"](a_rows, inv_a, b_rows, inv_b, index, out)
    return torch.from_numpy(out).view(shape)


def euclidean_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Return `‖a − b‖` in float64 over the last axis of broadcastable CPU float32 `a, b` (compiled)."""
    kernels = _compiled()
    assert kernels is not None
    a_rows, b_rows, index, shape = _rows_of(a, b)
    out = np.empty(a_rows.shape[0], dtype=np.float64)
    kernels["_euclidean_rows"](a_rows, b_rows, index, out)
    return torch.from_numpy(out).view(shape)
