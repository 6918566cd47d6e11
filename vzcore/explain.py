"""`vz explain`: score one text and show where each token's representation draws from.

vz explain "Many teenagers were helping [MASK]." --model minilm --layer 5 --words --out map.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

__all__ = ["explain_command", "strongest_sources"]


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


def explain_command(
    text: Annotated[str, typer.Argument(help="the text to score")],
    model: Annotated[
        str, typer.Option(help="short name (minilm, smollm2), local path, GGUF file or hub name")
    ] = "minilm",
    method: Annotated[list[str] | None, typer.Option(help="method (repeatable); see `vz methods`")] = None,
    layer: Annotated[
        list[int] | None, typer.Option(help="block index (repeatable, negatives from the end); default all")
    ] = None,
    target: Annotated[
        list[int] | None,
        typer.Option(help="target row to score (repeatable, negatives from the end); gradient methods need one"),
    ] = None,
    words: Annotated[bool, typer.Option(help="group sub-tokens into words")] = False,
    top: Annotated[int, typer.Option(help="strongest sources printed per token")] = 3,
    out: Annotated[Path, typer.Option(help="where to write the heatmap (PNG)")] = Path("vz_explain.png"),
    device: Annotated[str | None, typer.Option(help="torch device, e.g. cuda")] = None,
) -> None:
    """Score TEXT and print each token's strongest sources; write a labelled heatmap."""
    import vzcore
    from vzcore.plot import result_figure

    methods = method or ["value_zeroing"]
    for m in methods:  # fail before loading the model
        vzcore.methods.get_method(m)
    handle = vzcore.load_model(model, device=device)
    result = vzcore.score(handle, [text], methods=methods, layers=layer, targets=target)[0]
    view = result.word_level() if words else result
    labels = view.words if words else view.tokens
    for m in methods:
        for k, block in enumerate(result.layers):
            typer.echo(f"{m}, layer {block} ([target] <- strongest sources):")
            for line in strongest_sources(view.scores[m][k], labels, top):
                typer.echo(line)
    fig = result_figure(result, methods=methods, words=words, title=f"{handle.name}: {text[:80]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    typer.echo(f"heatmap written to {out}")
