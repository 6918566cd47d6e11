"""Say in words where each token's representation draws from (what `vz explain` prints)."""

from __future__ import annotations

import numpy as np

__all__ = ["strongest_sources"]


def strongest_sources(maps: np.ndarray, labels: list[str], top: int) -> list[str]:
    """Return one line per target: its `top` strongest sources in map `[target, source]`."""
    lines = []
    width = max(len(x) for x in labels)
    for i, row in enumerate(maps):
        if np.isnan(row).all():
            continue
        order = np.argsort(-row)[:top]
        cells = ", ".join(f"{labels[j]} {row[j]:.2f}" for j in order if row[j] > 0)
        lines.append(f"  {labels[i]:>{width}} <- {cells or '(no mixing)'}")
    return lines
