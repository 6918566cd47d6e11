"""Labelled heatmaps of mixing maps (tokens or words on both axes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vzcore.result import ScoreResult

__all__ = ["heatmap", "result_figure"]


def heatmap(ax, matrix: np.ndarray, labels: Sequence[str], title: str) -> None:
    """Draw one `[target, source]` map on `ax` with its labels; unscored (NaN) rows stay blank."""
    im = ax.imshow(np.ma.masked_invalid(matrix), cmap="viridis", vmin=0)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("source j (zeroed / attended token)")
    ax.set_ylabel("target i")
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def result_figure(
    result: ScoreResult,
    methods: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    words: bool = False,
    title: str | None = None,
):
    """Return a figure with one heatmap per (layer, method): layers down, methods across."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    stored = list(result.layers)
    layers = stored if layers is None else list(layers)
    missing = [layer for layer in layers if layer not in stored]
    if missing:
        raise ValueError(f"layers {missing} were not scored; this result holds layers {stored}")
    if words:
        word_view = result.word_level()
        labels, scores = word_view.words, word_view.scores
    else:
        labels, scores = result.labels, result.scores
    methods = list(scores) if methods is None else list(methods)
    side = 3.2 + 0.12 * len(labels)
    fig, axes = plt.subplots(
        len(layers), len(methods), figsize=(side * len(methods) + 1, side * len(layers)), squeeze=False
    )
    for r, layer in enumerate(layers):
        for c, method in enumerate(methods):
            heatmap(axes[r][c], scores[method][stored.index(layer)], labels, f"{method}, layer {layer}")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
