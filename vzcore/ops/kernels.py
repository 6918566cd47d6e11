"""Compiled per-pair passes of the fast path (numba, when installed): each fuses what torch runs as
several elementwise passes over `[pairs, d]` rows, each pass writing a fresh temporary.

They run on CPU float32 rows only; every caller keeps the torch arithmetic as its fallback (other
devices and dtypes, or numba absent), and the tests hold each kernel to that arithmetic.

Numba compiles each kernel once per machine (`cache=True`: a few seconds the first time), then
loads it from its cache in about a second per process, and a process that loads them holds about
100–160 MiB more (numba, and LLVM's code for the kernels). They save 0–20 % of the fast path's time
(most on long texts), so they are opt-in: `VZ_KERNELS=1` runs them, otherwise the torch passes run.
The choice is the process's from its start, never its history: loading them after some amount of work
made the same text score differently (at float32 rounding, and in other chunks) in a fresh Ray actor
and in a process that had worked before, so one job wrote other bytes in-process than on Ray.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import numpy as np
import torch

__all__ = ["available", "compiled", "cosine_rows", "euclidean_rows", "pair_states", "scaled_rows"]


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


def _pair_states(n, t, a, u, s_rows, centred, eps, slot, s_out, a_bias, inv_out):  # pragma: no cover
    # Every pair (text k, source j, target slot i) of a chunk, flat `q·t + i` with `q = k·n + j`:
    #   s = s_i − Σ_h a_ij^h u_j^h,   inv = 1 / sqrt(mean((C s)²) + ε)   (statistics summed in float64),
    #   a_bias[q, i] = (−a_ij^h · inv for each head h, then 1),   inv_out[q·t + i] = inv,
    # and `s` written to `s_out[slot[q·t + i]]` for the pairs wanted (`slot` ≥ 0), in their order.
    # a: `[b·n, t, H]`, u: `[b·n, H, d]`, s_rows: `[b·t, d]`, a_bias: `[b·n, t, H + 1]`.
    heads, d = a.shape[2], u.shape[2]
    row = np.empty(d, dtype=np.float32)
    for q in range(a.shape[0]):
        base = (q // n) * t
        for i in range(t):
            # Δ summed first, then taken from s_i: the small terms do not round at the size of s_i
            # (as the torch passes: batched product, then subtraction; on tiny encoder–decoders summing into
            # s_i directly put the maps 1.6× further from the reference)
            for c in range(d):
                row[c] = 0.0
            for h in range(heads):
                w = a[q, i, h]
                v = u[q, h]
                for c in range(d):
                    row[c] += w * v[c]
            src = s_rows[base + i]
            for c in range(d):
                row[c] = src[c] - row[c]
            mean = 0.0
            if centred:
                for c in range(d):
                    mean += np.float64(row[c])
                mean /= d
            var = 0.0
            for c in range(d):
                x = np.float64(row[c]) - mean
                var += x * x
            inv = np.float32(1.0 / math.sqrt(var / d + eps))
            for h in range(heads):
                a_bias[q, i, h] = -a[q, i, h] * inv
            a_bias[q, i, heads] = 1.0
            inv_out[q * t + i] = inv
            k = slot[q * t + i]
            if k >= 0:
                dst = s_out[k]
                for c in range(d):
                    dst[c] = row[c]


def _scaled_rows(flat, n, t, pre, p_rows, inv, out):  # pragma: no cover - compiled
    # out[p] = pre[flat[p]] + p_rows[i] · inv[flat[p]] for the wanted pairs `flat` (a gather fused into
    # the last pass; `out` may be `pre` itself when every pair is wanted). pre: `[b·n·t, F]`, p_rows: `[b·t, F]`.
    for p in range(flat.shape[0]):
        f = flat[p]
        r = (f // (n * t)) * t + f % t
        w = inv[f]
        src, add, dst = pre[f], p_rows[r], out[p]
        for c in range(dst.shape[0]):
            dst[c] = src[c] + add[c] * w


@functools.cache
def _compiled() -> dict[str, Any] | None:
    if os.environ.get("VZ_KERNELS", "0") != "1":
        return None
    try:
        import numba
    except ImportError:
        return None
    # Reassociation lets the float64 sums vectorise (their order then depends on the row length only,
    # not on the data or where it sits); no contraction into fused multiply-adds (see `_cosine_rows`).
    jit = numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz"})
    exact: list[Any] = [_inverse_norms, _cosine_rows, _euclidean_rows]
    kernels = {f.__name__: jit(f) for f in exact}
    # Their float32 sums may use fused multiply-adds and any order: the torch passes they replace round
    # differently too.
    fast = numba.njit(cache=True, nogil=True, fastmath=True)
    loose: list[Any] = [_pair_states, _scaled_rows]
    kernels.update({f.__name__: fast(f) for f in loose})
    return kernels


def available() -> bool:
    """Return whether the compiled kernels run here (`VZ_KERNELS=1` and numba installed); loads them."""
    return _compiled() is not None


def compiled(*tensors: torch.Tensor) -> bool:
    """Return whether the compiled kernels run on `tensors`: CPU float32, with `VZ_KERNELS=1` and numba."""
    if not all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors):
        return False
    return _compiled() is not None


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


def pair_states(
    n: int, a: torch.Tensor, u: torch.Tensor, s_rows: torch.Tensor, centred: bool, eps: float, flat: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return, for a chunk of pairs, the wanted pairs' states after attention `[p, d]` (the pairs `flat`,
    flat indices into `[b, n, t]`), every pair's `a_bias: [b·n, t, H + 1]` (`−a · inv` per head, then 1)
    and norm statistic `inv: [b·n·t]`, in one pass (compiled; see `_pair_states`).

    `a: [b·n, t, H]` attention weights per (text, source), `u: [b·n, H, d]`, `s_rows: [b·t, d]`.
    """
    kernels = _compiled()
    assert kernels is not None
    bn, t, heads = a.shape
    slot = torch.full((bn * t,), -1, dtype=torch.int64)
    slot[flat] = torch.arange(flat.shape[0])
    s_out = torch.empty(flat.shape[0], u.shape[-1])
    a_bias = torch.empty(bn, t, heads + 1)
    inv = torch.empty(bn * t)
    kernels["_pair_states"](
        n, t, a.contiguous().numpy(), u.contiguous().numpy(), s_rows.contiguous().numpy(), centred, float(eps),
        slot.numpy(), s_out.numpy(), a_bias.numpy(), inv.numpy(),
    )  # fmt: skip
    return s_out, a_bias, inv


def scaled_rows(
    flat: torch.Tensor | None, n: int, t: int, pre: torch.Tensor, p_rows: torch.Tensor, inv: torch.Tensor
) -> torch.Tensor:
    """Return `pre[f] + p_rows[i] · inv[f]` for the wanted pairs `f` in `flat` (every pair when `flat` is
    None) as `[p, F]`: `pre: [b·n·t, F]`, `p_rows: [b·t, F]` (compiled). Written into `pre`'s first rows:
    `flat` increases, so row `p` is written only after row `flat[p] ≥ p` was read."""
    kernels = _compiled()
    assert kernels is not None
    out = pre if flat is None else pre[: flat.shape[0]]
    which = torch.arange(pre.shape[0]) if flat is None else flat
    kernels["_scaled_rows"](which.numpy(), n, t, pre.numpy(), p_rows.contiguous().numpy(), inv.numpy(), out.numpy())
    return out
