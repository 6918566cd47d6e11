"""Say in words where each token's representation draws from (what `vz explain` prints)."""

from __future__ import annotations

import unicodedata

import numpy as np

__all__ = ["strongest_sources"]


def _width(label: str) -> int:
    """Return how many terminal columns `label` takes (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in label)


def strongest_sources(maps: np.ndarray, labels: list[str], top: int) -> list[str]:
    """Return one line per target: its `top` strongest sources in map `[target, source]`."""
    lines = []
    width = max(_width(x) for x in labels)
    for i, row in enumerate(maps):
        if np.isnan(row).all():
            continue
        order = np.argsort(-row)[:top]
        cells = ", ".join(f"{labels[j]} {row[j]:.2f}" for j in order if row[j] > 0)
        pad = " " * (width - _width(labels[i]))
        lines.append(f"  {pad}{labels[i]} <- {cells or '(no mixing)'}")
    return lines
