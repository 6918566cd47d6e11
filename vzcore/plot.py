"""Labelled heatmaps of mixing maps (tokens or words on both axes).

Labels are drawn as they are stored, in logical order: matplotlib (3.11 and later) lays text out
with libraqm, so right-to-left words (Hebrew, Arabic) read right to left and Arabic letters join.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np

from vzcore.fonts import label_fonts
from vzcore.maps import FRAMES
from vzcore.result import ScoreResult, Seq2SeqResult, WordResult
from vzcore.tokens import sequence_texts

__all__ = ["heatmap", "label_step", "pair_figure", "result_figure", "wrap_title"]

MAX_INCHES = 20.0  # a figure's longest side: past it, tick labels thin out instead of the figure growing
LABEL_INCHES = 0.12  # room one 7-point tick label takes along an axis
MARGIN_INCHES = 3.2  # a panel's room for its tick labels, axis labels and colour bar
TITLE_LINES = 12  # a longer title is cut, saying how much was left out


def label_step(count: int, axis_inches: float) -> int:
    """Return k such that labelling every k-th of `count` ticks fits on an axis `axis_inches` long."""
    fits = max(int(axis_inches / LABEL_INCHES), 1)
    return max(math.ceil(count / fits), 1)


def wrap_title(text: str, width_inches: float, fontsize: float = 10) -> str:
    """Return `text` wrapped to lines that fit `width_inches`, at most `TITLE_LINES` of them."""
    chars = max(int(width_inches * 72 / (0.6 * fontsize)), 20)  # a character is about 0.6 em wide
    lines = textwrap.wrap(" ".join(text.split()), chars) or [""]
    if len(lines) > TITLE_LINES:
        left = len(" ".join(lines[TITLE_LINES:]))
        lines = [*lines[:TITLE_LINES], f"[… {left} more characters]"]
    return "\n".join(lines)


def heatmap(
    ax,
    matrix: np.ndarray,
    labels: Sequence[str],
    title: str,
    step: int = 1,
    fontfamily: list[str] | None = None,
    sources: Sequence[str] | None = None,
    source_step: int | None = None,
    unit: str = "token",
) -> None:
    """Draw one `[target, source]` map on `ax`, labelling every `step`-th token; unscored (NaN) rows stay blank.

    `sources` label the columns when they are another stream than the rows (a cross-attention map);
    `unit` names what a column is (`token`, or an audio `frame`)."""
    im = ax.imshow(np.ma.masked_invalid(matrix), cmap="viridis", vmin=0, aspect="auto" if sources else "equal")
    columns = labels if sources is None else sources
    cstep = step if source_step is None else source_step
    font = {"fontsize": 7} | ({"fontfamily": fontfamily} if fontfamily else {})
    ticks = range(0, len(columns), cstep)
    ax.set_xticks(ticks, [columns[k] for k in ticks], rotation=90, **font)
    ticks = range(0, len(labels), step)
    ax.set_yticks(ticks, [labels[k] for k in ticks], **font)
    every = f" (one label per {cstep} positions)" if cstep > 1 else ""
    ax.set_xlabel(f"source j (zeroed / attended {unit}){every}")
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
    """Return a figure with one heatmap per (layer, method): layers down, methods across.

    Its longest side is at most `MAX_INCHES`; longer sequences label every k-th token. The title
    is wrapped to the figure's width. The figure is a plain `matplotlib.figure.Figure`, outside
    pyplot: drawing it changes no backend and no pyplot state (a notebook shows it as a cell's
    value; `fig.savefig` writes it).
    """
    from matplotlib.figure import Figure

    stored = list(result.layers)
    layers = stored if layers is None else list(layers)
    missing = [layer for layer in layers if layer not in stored]
    if missing:
        raise ValueError(f"layers {missing} were not scored; this result holds layers {stored}")
    if words or isinstance(result, WordResult):  # a word-pooled store's examples are word maps already
        word_view = result.word_level()
        labels, scores = word_view.words, word_view.scores
    else:
        labels, scores = result.labels, result.scores
    methods = list(scores) if methods is None else list(methods)
    rows, cols = len(layers), len(methods)
    side = min(MARGIN_INCHES + LABEL_INCHES * len(labels), (MAX_INCHES - 1) / cols, MAX_INCHES / rows)
    step = label_step(len(labels), max(side - MARGIN_INCHES, side / 2))
    fonts = label_fonts([*labels, title or ""])
    fig = Figure(figsize=(side * cols + 1, side * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, layer in enumerate(layers):
        for c, method in enumerate(methods):
            heatmap(
                axes[r][c],
                scores[method][stored.index(layer)],
                labels,
                f"{method}, layer {layer}",
                step=step,
                fontfamily=fonts,
                unit=_unit(result),
            )
    if title:
        font = {"fontfamily": fonts} if fonts else {}
        fig.suptitle(wrap_title(title, side * cols + 1), fontsize=10, **font)
    return fig


def _unit(result: ScoreResult | WordResult) -> str:
    """Name what a column of a result's heatmap is: a word (of a word-pooled store), an audio frame or a token."""
    if isinstance(result, WordResult):
        return "word"
    # An audio encoder's maps, or a speech model's encoder site: frames, whatever the stream's name.
    return "frame" if result.site.sources.kind == FRAMES.kind else "token"


def _stream_labels(result: Seq2SeqResult, stream: str) -> list[str]:
    tokens = result.source_tokens if stream == "source" else result.target_tokens
    if result.source_ids is None and stream == "source":  # audio frames: their times, as stored
        return list(tokens or [str(k) for k in range(result.n_source)])
    return sequence_texts(list(tokens or []))


def pair_figure(
    result: Seq2SeqResult,
    methods: Sequence[str] | None = None,
    layers: dict[str, int] | None = None,
    title: str | None = None,
):
    """Return a figure of an encoder–decoder pair's maps: a heatmap per (site, method) at one layer of each
    site (`layers[site]`, a block index; default its last scored one), sites down, methods across. Rows
    and columns are labelled with the site's streams (the cross site: target tokens by source positions)."""
    from matplotlib.figure import Figure

    sites = list(result.sites)
    first = result.sites[sites[0]]
    methods = list(first.scores) if methods is None else list(methods)
    layers = dict(layers or {})
    streams = {"encoder": ("source", "source"), "decoder": ("target", "target"), "cross": ("target", "source")}
    labels = {s: _stream_labels(result, s) for s in ("source", "target")}
    longest = max(len(labels["source"]), len(labels["target"]))
    side = min(MARGIN_INCHES + LABEL_INCHES * longest, (MAX_INCHES - 1) / len(methods), MAX_INCHES / len(sites))
    fonts = label_fonts([*labels["source"], *labels["target"], title or ""])
    fig = Figure(figsize=(side * len(methods) + 1, side * len(sites)), layout="constrained")
    axes = fig.subplots(len(sites), len(methods), squeeze=False)
    for r, site in enumerate(sites):
        maps = result.sites[site]
        layer = layers.get(site, maps.layers[-1])
        if layer not in maps.layers:
            raise ValueError(f"layer {layer} was not scored at the {site} site; it holds layers {maps.layers}")
        rows, cols = streams[site]
        axis = max(side - MARGIN_INCHES, side / 2)
        for c, method in enumerate(methods):
            heatmap(
                axes[r][c],
                maps.scores[method][maps.layers.index(layer)],
                labels[rows],
                f"{site}: {method}, layer {layer}",
                step=label_step(len(labels[rows]), axis),
                fontfamily=fonts,
                sources=labels[cols] if rows != cols else None,
                source_step=label_step(len(labels[cols]), axis),
                unit="frame" if cols == "source" and result.source_ids is None else "token",
            )
    if title:
        font = {"fontfamily": fonts} if fonts else {}
        fig.suptitle(wrap_title(title, side * len(methods) + 1), fontsize=10, **font)
    return fig
