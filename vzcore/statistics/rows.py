"""Which rows of a context-mixing map a statistic counts, and the masses of a row: defined once.

A map is `[target i, source j]` (or a stack of them, `[..., n, n]`): row i says how target i
mixes its sources. Every statistic of maps is a mean over the rows that count, whoever asks: the
corpus aggregate (`vz aggregate`: `vzcore.statistics.partial` and `.block` sum these rows over a
corpus) and one example's value (`vzcore.queries.top_examples`, `vz query top`). A row counts when

- it was scored: a row holding a NaN was not (left out by `score(targets=...)`), and it is left
  out, never read as zeros;
- it has at least two valid entries (`vzcore.maps.valid_entries`: every source in an encoder's
  map, sources `j <= i` in a causal one). A single-entry row (row 0 of a causal map, the only row
  of a one-token text) is a single 1 by construction and says nothing about mixing; the aggregate
  counts such rows apart (`single_rows`), and an example with no row that counts has no value.

Every other row counts, special tokens' own rows ([CLS], BOS) included: what a special token
takes from its context is mixing too. Special tokens as *sources* are what `special_mass` weighs.
"""

from __future__ import annotations

import numpy as np

from vzcore.maps import valid_entries

__all__ = ["MIN_ROW_ENTRIES", "counted_rows", "example_masses", "row_masses", "scored_rows"]

MIN_ROW_ENTRIES = 2  # valid entries a row needs to count: a single entry cannot mix


def scored_rows(maps: np.ndarray) -> np.ndarray:
    """Return `[..., n]`: whether each row of `maps` `[..., n, n]` was scored (holds no NaN)."""
    return ~np.isnan(maps).any(-1)


def counted_rows(scored: np.ndarray, k_valid: np.ndarray) -> np.ndarray:
    """Return the rows that count (module docstring): `scored` `[..., n]` rows with at least two of
    `k_valid` `[n]` valid entries."""
    return scored & (k_valid >= MIN_ROW_ENTRIES)


def row_masses(maps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Return `[E, L, n, K]`: each row's mass on each of K source weightings (one matmul).

    `maps` is `[E, L, n, n]` with 0 off the valid entries; `weights` is `[E, n, K]` (a column of
    ones gives the row sum, a source mask the mass on those sources)."""
    num_e, num_layers, n, _ = maps.shape
    return np.matmul(maps.reshape(num_e, num_layers * n, n), weights).reshape(num_e, num_layers, n, -1)


def example_masses(m: np.ndarray, causal: bool, sources: np.ndarray) -> np.ndarray | None:
    """Return `[3]`: the mass a row keeps (self), takes from other sources (context) and puts on
    `sources` `[n]` bool, each the mean over the rows of map `m` `[n, n]` that count; None when no
    row counts."""
    n = m.shape[-1]
    valid = valid_entries(n, n, causal)
    keep = counted_rows(scored_rows(m), valid.sum(1))
    if not keep.any():
        return None
    x = np.where(valid & keep[:, None], m, 0.0).astype(np.float64)  # NaN rows and invalid entries: 0
    weights = np.stack([np.ones(n), np.asarray(sources, dtype=np.float64)], -1)  # `[n, 2]`
    masses = row_masses(x[None, None], weights[None])[0, 0][keep]  # `[rows, 2]`: row sum, on `sources`
    own = np.diagonal(x)[keep]
    return np.asarray([own.mean(), (masses[:, 0] - own).mean(), masses[:, 1].mean()])
