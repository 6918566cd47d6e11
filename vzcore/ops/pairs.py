"""The (target i, source j) pairs of a padded batch: target rows, chunks under a memory budget,
and each source's part of a target's attention output."""

from __future__ import annotations

import torch

__all__ = ["attention_deltas", "gather_rows", "pair_chunks", "visible_pair_chunks"]


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


def visible_pair_chunks(reach: torch.Tensor, bytes_per_pair: int, budget: int) -> list[tuple[slice, slice, slice]]:
    """Cut a `[b texts, t targets]` grid into `(texts, rows, sources)` chunks of at most `budget` bytes,
    where target row `r` of text `k` sees sources `0 .. reach[k, r] − 1` only (`reach: [b, t]`, CPU).

    A chunk computes the sources `0 .. s − 1` its rows can see (`s`: their largest reach), not all `n`:
    a causal row `i` sees `i + 1` sources, a shorter text of a padded batch its own length. Whole
    texts are grouped when they fit; otherwise each text's rows are cut greedily, so early causal
    rows, which see few sources, go many to a chunk (each chunk holds about the same pairs).
    """
    b, t = reach.shape
    cap = max(1, budget // max(1, bytes_per_pair))  # pairs per chunk
    whole = reach.amax(1).clamp_min(1).tolist() if t else [1] * b
    table = reach.tolist()
    chunks: list[tuple[slice, slice, slice]] = []
    k = 0
    while k < b:
        if t * whole[k] <= cap:  # whole texts fit: group as many as fit together
            end, widest = k + 1, whole[k]
            while end < b and (end - k + 1) * t * max(widest, whole[end]) <= cap:
                widest = max(widest, whole[end])
                end += 1
            chunks.append((slice(k, end), slice(0, t), slice(0, widest)))
            k = end
            continue
        row = table[k]
        r = 0
        while r < t:
            end, widest = r + 1, max(1, row[r])
            while end < t and (end - r + 1) * max(widest, row[end]) <= cap:
                widest = max(widest, row[end])
                end += 1
            chunks.append((slice(k, k + 1), slice(r, end), slice(0, widest)))
            r = end
        k += 1
    return chunks
