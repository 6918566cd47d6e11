"""The evaluations' tables, plots and report, from the stored target rows (no model needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vzcore.evaluation.metrics import accuracy, bootstrap_ci, cue_share, random_share, spearman
from vzcore.methods.registry import get_method

__all__ = ["PAPER_NOTE", "blank_out_tables", "cue_tables", "write_outputs"]

# As reproduced in the authors' EACL 2024 tutorial slides, for bert-base-uncased (12 layers).
PAPER_NOTE = (
    "Paper (Mohebbi et al. 2023, bert-base-uncased, pre-trained, 12 layers; as reproduced in the authors' "
    "EACL 2024 tutorial): value zeroing peaks near 0.28 cue share at layer 9, attention-norm reaches about "
    "0.22, raw attention stays at 0.04–0.13, a random baseline sits near 0.12. **Those numbers come from a "
    "different model**; the authors marked the cue's first sub-token only: compare shapes and orderings, "
    "not values."
)
ALL = "all"
# The paper's bert-base-uncased figures (pre-trained; peak cue share, and its layer of 12 where given).
PAPER_PEAKS = {"value_zeroing": "0.28 (layer 9 of 12)", "attention_norm": "0.22", "attention": "0.04–0.13"}
PAPER_RANDOM = "about 0.12"
# Fewer removed positions make Spearman's rho ±1 or undefined whatever the method: such examples
# count as NaN (left out of the mean; `examples` counts the others). Short causal prefixes hit this.
MIN_POSITIONS = 3


def _group(probe) -> str:
    """The summary group of a probe: its phenomenon, apart where the cue is the predicting position."""
    return f"{probe.phenomenon} (cue at row)" if probe.cue_at_row else probe.phenomenon


def cue_tables(probes, rows: dict, model_side: dict, has_head: bool, methods: list[str]) -> dict:
    """Return the per-example cue shares, their summary (with the random baseline) and the LM accuracy."""
    import pandas as pd

    records = []
    for p in probes:
        base = random_share(p.n, len(p.cues))
        for m in methods:
            layers, row = rows[(p.example_id, m)]
            for layer, share in zip(layers, cue_share(row, p.cues), strict=True):
                records.append(
                    dict(
                        example_id=p.example_id,
                        phenomenon=p.phenomenon,
                        group=_group(p),
                        method=m,
                        layer=int(layer),
                        share=float(share),
                        random=base,
                        tokens=list(p.tokens),
                        target=p.row,
                        cues=list(p.cues),
                    )
                )
    examples = pd.DataFrame(records)
    summary = []
    groups = sorted(examples["group"].unique())
    plain = [g for g in groups if "(cue at row)" not in g]
    for (m, layer), frame in examples.groupby(["method", "layer"], sort=False):
        for g in [*groups, ALL]:
            sub = frame[frame["group"].isin(plain if g == ALL else [g])]
            if sub.empty:
                continue
            lo, hi = bootstrap_ci(sub["share"].to_numpy())
            summary.append(
                dict(
                    method=m,
                    layer=layer,
                    phenomenon=g,
                    mean=float(np.nanmean(sub["share"])),
                    ci_low=lo,
                    ci_high=hi,
                    random=float(sub["random"].mean()),
                    examples=int(sub["share"].notna().sum()),
                )
            )
    out = {"examples.parquet": examples, "summary.parquet": pd.DataFrame(summary)}
    if has_head:
        acc = []
        by_group: dict[str, list] = {}
        for p in probes:
            rec = model_side.get(p.example_id, {})
            g, b = rec.get("good"), rec.get("bad")
            # by phenomenon: where the cue sits changes the share, not what the model must choose
            by_group.setdefault(p.phenomenon, []).append((np.nan if g is None else g, np.nan if b is None else b))
        by_group[ALL] = [x for k, v in by_group.items() for x in v]
        for g, pairs in by_group.items():
            a, n = accuracy([x for x, _ in pairs], [y for _, y in pairs])
            acc.append(dict(phenomenon=g, accuracy=a, pairs=n, undecided=len(pairs) - n))
        out["accuracy.parquet"] = pd.DataFrame(acc)
    return out


def blank_out_tables(probes, rows: dict, model_side: dict, methods: list[str]) -> dict:
    """Return each example's Spearman correlation of each method's target row with the blank-out
    changes, and their summary."""
    import pandas as pd

    records = []
    for p in probes:
        rec = model_side[p.example_id]
        positions, change = rec["positions"], np.asarray(rec["change"], dtype=np.float64)
        for m in methods:
            layers, row = rows[(p.example_id, m)]
            rolled = get_method(m).needs_all_rows  # rollouts are global: judged at the last layer only
            for k, layer in enumerate(layers):
                if rolled and k != len(layers) - 1:
                    continue
                records.append(
                    dict(
                        example_id=p.example_id,
                        phenomenon=p.phenomenon,
                        method=m,
                        layer=int(layer),
                        rollout=rolled,
                        spearman=spearman(row[k, positions], change)
                        if len(positions) >= MIN_POSITIONS
                        else float("nan"),
                        positions=len(positions),
                    )
                )
    examples = pd.DataFrame(records)
    summary = (
        examples.groupby(["method", "layer", "rollout"], sort=False)["spearman"]
        .agg(mean="mean", std="std", examples="count")
        .reset_index()
    )
    return {"examples.parquet": examples, "summary.parquet": summary}


def _heatmap(summary, path: Path, title: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: never the caller's backend or figures

    frame = summary[summary["phenomenon"] == ALL]
    grid = frame.pivot(index="method", columns="layer", values="mean")
    fig = Figure(figsize=(2.6 + 0.55 * grid.shape[1], 0.9 + 0.42 * grid.shape[0]))
    ax = fig.subplots()
    im = ax.imshow(grid.to_numpy(), cmap="viridis", aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            v = grid.iat[i, j]
            ax.text(j, i, "" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7, color="w")
    ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns])
    ax.set_yticks(range(grid.shape[0]), list(grid.index))
    ax.set_xlabel("layer")
    ax.set_title(f"{title}\nrandom baseline {frame['random'].mean():.3f}", fontsize=9)
    fig.colorbar(im, ax=ax, label="cue share")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _spearman_plot(summary, path: Path, title: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: never the caller's backend or figures

    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    for m, frame in summary.groupby("method", sort=False):
        frame = frame.sort_values("layer")
        if bool(frame["rollout"].iloc[0]):
            ax.errorbar(frame["layer"], frame["mean"], yerr=frame["std"], fmt="s", capsize=3, label=f"{m} (last layer)")
        else:
            ax.plot(frame["layer"], frame["mean"], marker="o", label=m)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("layer")
    ax.set_ylabel("Spearman ρ (mean over examples)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _markdown(frame, floatfmt: str = ".3f") -> str:
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        cells = [format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cue_pivot(summary):
    """Return the cue-share summary over all phenomena as methods × layers (with the random baseline row)."""
    frame = summary[summary["phenomenon"] == ALL]
    grid = frame.pivot(index="method", columns="layer", values="mean")
    grid.loc["random (expected)"] = frame.groupby("layer")["random"].mean()
    return grid.reset_index()


def paper_comparison(summary):
    """Return each method's peak mean cue share over all phenomena (and where), beside the paper's figure."""
    import pandas as pd

    frame = summary[summary["phenomenon"] == ALL]
    layers = sorted(frame["layer"].unique())
    out = []
    for m, sub in frame.groupby("method", sort=True):
        best = sub.loc[sub["mean"].idxmax()]
        where = f"layer {int(best['layer'])} of {len(layers)} (0-based)"
        ci = f"[{best['ci_low']:.3f}, {best['ci_high']:.3f}]"
        out.append(dict(method=m, peak=f"{best['mean']:.3f} {ci}", at=where, paper=PAPER_PEAKS.get(m, "—")))
    out.append(dict(method="random", peak=f"{frame['random'].mean():.3f}", at="every layer", paper=PAPER_RANDOM))
    return pd.DataFrame(out)


def write_outputs(cfg, run, probes, rows, model_side, has_head) -> tuple[dict, list[str]]:
    """Write the run's tables, plot and `report.md` into `run.out`; return the tables and the files written."""
    out: Path = run.out
    title = f"{cfg.model}: {cfg.kind}"
    lines = [f"# {title}", "", f"Methods: {', '.join(run.methods)}.", ""]
    lines += [f"- note: {n}" for n in run.notes]
    if run.skipped:
        lines.append(f"- {len(run.skipped)} example(s) do not apply to this model (see config.json for the reasons)")
    lines.append("")
    if cfg.kind == "cue-alignment":
        tables = cue_tables(probes, rows, model_side, has_head, run.methods)
        _heatmap(tables["summary.parquet"], out / "heatmap.png", title)
        plot = "heatmap.png"
        cues = "the first sub-token of each cue word" if cfg.first_subtoken else "every sub-token of the cue word"
        lines += [
            f"Share of the target row on the cue ({cues}), mean over {len(probes)} examples; "
            "95 % bootstrap intervals per phenomenon in summary.parquet.",
            "",
            _markdown(cue_pivot(tables["summary.parquet"])),
            "",
        ]
        if "accuracy.parquet" in tables:
            lines += ["Agreement accuracy of the model's own LM head:", "", _markdown(tables["accuracy.parquet"]), ""]
        lines += [
            "Peak cue share over all phenomena (95 % bootstrap interval) next to the paper's figures:",
            "",
            _markdown(paper_comparison(tables["summary.parquet"])),
            "",
            PAPER_NOTE,
            "",
        ]
    else:
        tables = blank_out_tables(probes, rows, model_side, run.methods)
        _spearman_plot(tables["summary.parquet"], out / "spearman.png", title)
        plot = "spearman.png"
        lines += [
            f"Spearman correlation of each method's target row with the change of the prediction when one "
            f"token is removed (--removal {cfg.removal}, --output {cfg.output}); layer-wise methods at every "
            "layer, rollouts at the last; mean ± std over examples.",
            "",
            _markdown(tables["summary.parquet"]),
            "",
        ]
    lines.append(f"![{plot}]({plot})")
    for name, frame in tables.items():
        frame.to_parquet(out / name, index=False)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return tables, [*sorted(tables), plot, "report.md"]
