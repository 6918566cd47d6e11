"""The evaluations' numbers, on plain arrays: cue share, its random baseline, bootstrap intervals,
Spearman correlation and agreement accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["accuracy", "bootstrap_ci", "cue_share", "random_share", "rank", "spearman"]


def cue_share(rows: np.ndarray, cues: Sequence[int]) -> np.ndarray:
    """Return the share of each row on the `cues` positions: `rows[..., cues].sum(-1) / rows.sum(-1)`.

    `rows` is `[..., n]` (e.g. `[layers, n]`, one target row per layer); a row that sums to zero or
    holds NaN (unscored) gives NaN.
    """
    rows = np.asarray(rows, dtype=np.float64)
    total = rows.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = rows[..., list(cues)].sum(-1) / total
    return np.where(total > 0, share, np.nan)


def random_share(n: int, cues: int) -> float:
    """Return the expected cue share of a uniformly random normalised row over `n` positions.

    Any row whose weights are exchangeable (e.g. uniform on the simplex) puts `1/n` on each
    position in expectation, so `cues` positions get `cues / n`.
    """
    if not 0 < cues <= n:
        raise ValueError(f"need 0 < cues <= n, got cues={cues}, n={n}")
    return cues / n


def bootstrap_ci(
    values: Sequence[float], level: float = 0.95, resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Return the percentile bootstrap interval of the mean of `values` (NaNs left out)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(1)
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(lo), float(hi)


def rank(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """Return 1-based ranks of `x`, ties sharing their average rank."""
    values = np.asarray(x, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    for v in np.unique(values):
        tied = values == v
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Return Spearman's rank correlation of `x` and `y` (NaN when either is constant or too short)."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(a) != len(b):
        raise ValueError(f"x and y differ in length ({len(a)} and {len(b)})")
    if len(a) < 2 or np.isnan(a).any() or np.isnan(b).any():
        return float("nan")
    rx, ry = rank(a), rank(b)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def accuracy(good: Sequence[float], bad: Sequence[float]) -> tuple[float, int]:
    """Return the share of pairs whose good score beats the bad one, and how many pairs counted
    (pairs with a NaN score, e.g. a foil whose first piece equals the good word's, are left out)."""
    g, b = np.asarray(good, dtype=np.float64), np.asarray(bad, dtype=np.float64)
    keep = ~(np.isnan(g) | np.isnan(b))
    if not keep.any():
        return float("nan"), 0
    return float((g[keep] > b[keep]).mean()), int(keep.sum())
