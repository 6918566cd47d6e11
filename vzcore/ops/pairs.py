"""The (target i, source j) pairs of a padded batch: target rows, chunks under a memory budget,
and each source's part of a target's attention output."""

from __future__ import annotations

import torch

__all__ = ["attention_deltas", "gather_rows", "pair_chunks"]


def gather_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Return `x[k, rows[k]]` for every text k: `[b, t, ...]` from `x: [b, n, ...]`, `rows: [b, t]`."""
    return x[torch.arange(x.shape[0], device=x.device)[:, None], rows]


def attention_deltas(attn_rows: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Return `Δ[b, t, j] = Σ_h a[b, h, t, j] u[b, j, h]` for `attn_rows: [b, H, t, n]`, `u: [b, n, H, d]`."""
    return torch.einsum("bhtj,bjhd->btjd", attn_rows, u)


def pair_chunks(b: int, t: int, n: int, bytes_per_pair: int, budget: int) -> list[tuple[slice, slice]]:
    """Cut a `[b texts, t targets, n sources]` grid into `(texts, rows)` chunks of at most `budget` bytes.

    Rows are split first (a chunk of one text keeps its matrix products tall); texts are grouped
    when whole texts fit.
    """
    rows = max(1, min(t, budget // max(1, n * bytes_per_pair)))
    texts = max(1, min(b, budget // max(1, rows * n * bytes_per_pair))) if rows == t else 1
    return [(slice(k, k + texts), slice(r, r + rows)) for k in range(0, b, texts) for r in range(0, t, rows)]
