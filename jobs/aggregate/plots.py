"""PNG plots of aggregate tables: per-layer curves, distance profiles, method agreement, length buckets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["agreement_heatmap", "distance_profiles", "layer_curves", "write_plots"]

CURVES = ("self_mass", "special_mass", "punct_mass", "prev_mass", "next_mass", "entropy")
LEGEND_LAYERS = 10  # more layers than this get a colour map and a colour bar instead of a legend


def layer_curves(layers, bucket: str = "all"):
    """Return a figure: one panel per statistic, one line per method, over layers.

    A statistic that is zero (or undefined) at every layer for every method, such as the mass on
    special tokens for a tokenizer that adds none, gets no panel; the figure says which were left out.
    """
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and figures are left alone

    data = layers[layers.bucket == bucket]
    shown = [c for c in CURVES if (data[c].fillna(0) != 0).any()]
    dropped = [c for c in CURVES if c not in shown]
    cols = min(len(shown), 3) or 1
    rows = max(-(-len(shown) // cols), 1)
    fig = Figure(figsize=(4 * cols, 3.25 * rows + 0.3), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel()[len(shown) :]:
        ax.set_axis_off()
    for ax, col in zip(axes.ravel(), shown, strict=False):
        for method, g in data.groupby("method", sort=False):
            ax.plot(g.layer, g[col], marker="o", markersize=3, label=method)
        ax.set_title(col.replace("_", " "))
        ax.set_xlabel("layer")
    if shown:
        axes[0, 0].legend(fontsize=8)
    title = f"Per-layer context mixing ({bucket} lengths)"
    if dropped:
        names = ", ".join(c.replace("_", " ") for c in dropped)
        title += f"\nnot shown (zero or undefined at every layer for every method): {names}"
    fig.suptitle(title)
    return fig


def distance_profiles(distance, bucket: str = "all"):
    """Return a figure: mean mass by relative position `j - i`, one panel per method, a line per layer.

    Up to `LEGEND_LAYERS` layers are told apart by a legend; more by a colour map with a colour bar.
    """
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and figures are left alone

    data = distance[(distance.bucket == bucket) & ~distance.overflow]
    methods = list(dict.fromkeys(data.method))
    layer_ids = sorted(set(data.layer))
    many = len(layer_ids) > LEGEND_LAYERS
    fig = Figure(figsize=(4.5 * len(methods) + (1 if many else 0), 3.6), layout="constrained")
    axes = fig.subplots(1, max(len(methods), 1), squeeze=False, sharey=True)
    cmap = matplotlib.colormaps["viridis"]
    norm = matplotlib.colors.Normalize(min(layer_ids, default=0), max(layer_ids, default=1))
    for ax, method in zip(axes[0], methods, strict=True):
        g = data[data.method == method]
        for layer, gl in g.groupby("layer"):
            colour = {"color": cmap(norm(layer))} if many else {}
            ax.plot(gl.offset, gl.mass, marker=".", label=f"layer {layer}", linewidth=1, **colour)
        ax.set_title(method)
        ax.set_xlabel("relative position j - i")
    axes[0, 0].set_ylabel("mean mass per row")
    if many:
        bar = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(bar, ax=axes[0].tolist(), label="layer", pad=0.01)
    else:
        axes[0, -1].legend(fontsize=7)
    return fig


def agreement_heatmap(agreement, bucket: str = "all"):
    """Return a figure: method pairs by layer, coloured by mean Spearman correlation."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and figures are left alone

    data = agreement[agreement.bucket == bucket]
    pairs = list(dict.fromkeys(zip(data.method_a, data.method_b, strict=True)))
    layers = sorted(set(data.layer))
    grid = np.full((len(pairs), len(layers)), np.nan)
    for r in data.itertuples():
        grid[pairs.index((r.method_a, r.method_b)), layers.index(r.layer)] = r.spearman
    fig = Figure(figsize=(4.5 + 0.6 * len(layers), 1.5 + 0.5 * max(len(pairs), 1)))
    ax = fig.subplots()
    im = ax.imshow(grid, vmin=-1, vmax=1, cmap="RdBu_r", aspect="auto")
    ax.set_yticks(range(len(pairs)), [f"{a} / {b}" for a, b in pairs], fontsize=8)
    ax.set_xticks(range(len(layers)), layers)
    ax.set_xlabel("layer")
    for (y, x), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="mean Spearman")
    ax.set_title("Method agreement")
    fig.tight_layout()
    return fig


def length_buckets(layers, column: str = "self_mass"):
    """Return a figure: `column` over layers per sentence-length bucket, one panel per method."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and figures are left alone

    data = layers[(layers.bucket != "all") & (layers.examples > 0)]
    methods = list(dict.fromkeys(data.method))
    fig = Figure(figsize=(4.5 * max(len(methods), 1), 3.6))
    axes = fig.subplots(1, max(len(methods), 1), squeeze=False)
    for ax, method in zip(axes[0], methods, strict=False):
        for bucket, g in data[data.method == method].groupby("bucket", sort=False):
            ax.plot(g.layer, g[column], marker="o", label=f"{bucket} tokens")
        ax.set_title(f"{method}: {column.replace('_', ' ')}")
        ax.set_xlabel("layer")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def write_plots(tables: dict, out: Path) -> list[str]:
    """Write the plots of `tables` into `out` and return their file names."""
    figures = {
        "layer_curves.png": layer_curves(tables["layers.parquet"]),
        "distance_profile.png": distance_profiles(tables["distance.parquet"]),
        "length_buckets.png": length_buckets(tables["layers.parquet"]),
    }
    if len(tables["agreement.parquet"]):
        figures["agreement.png"] = agreement_heatmap(tables["agreement.parquet"])
    for name, fig in figures.items():
        fig.savefig(Path(out) / name, dpi=110)
    return list(figures)
