"""The aggregate's output: its tables (schema in `SCHEMA`) from merged statistics, and its report."""

from __future__ import annotations

import numpy as np

from vzcore.statistics.partial import TYPE_SUMS, PartialStats, StatsSpec
from vzcore.tokens import token_text, vocabulary_scheme

__all__ = ["SCHEMA", "report", "stats_tables"]

# Output tables and their columns (means are over scored rows unless said otherwise).
SCHEMA = {
    "layers.parquet": {
        "method": "string: scoring method",
        "layer": "int: block index of the map",
        "bucket": "string: 'all' or a sentence-length bucket in tokens, e.g. '16-31', '512+'",
        "examples": "int: scored examples in the bucket",
        "rows": "int: scored rows (target tokens) with at least two valid entries: every mass is a mean over these",
        "single_rows": "int: scored rows with a single valid entry (row 0 of a causal map, one-token texts):"
        " always a single 1, left out of every mass statistic and of entropy",
        "self_mass": "float: mean diagonal entry (mass a token keeps)",
        "context_mass": "float: mean off-diagonal row mass (mass mixed in from context)",
        "special_mass": "float: mean row mass on special source tokens ([CLS], [SEP], BOS, EOS, PAD)",
        "punct_mass": "float: mean row mass on punctuation source tokens",
        "prev_mass": "float: mean mass on the previous token (j = i - 1)",
        "next_mass": "float: mean mass on the next token (j = i + 1)",
        "near_mass": "float: mean mass on 2 <= |j - i| <= near_max",
        "far_mass": "float: mean mass on |j - i| > near_max",
        "entropy": "float: mean row entropy / log(valid entries); rows with one entry or all zeros left out",
        "entropy_rows": "int: rows averaged in entropy",
        "zero_rows": "int: scored rows whose entries are all zero",
    },
    "distance.parquet": {
        "method": "string",
        "layer": "int",
        "bucket": "string",
        "offset": "int: j - i; the smallest and largest values are overflow bins (<= -(D+1), >= D+1)",
        "overflow": "bool: this row is an overflow bin",
        "mass": "float: mean mass per scored row at this offset",
        "mass_per_entry": "float: mean entry value at this offset, over rows where the offset exists",
        "entries": "int: entries counted at this offset",
    },
    "agreement.parquet": {
        "method_a": "string",
        "method_b": "string",
        "layer": "int",
        "bucket": "string",
        "sentences": "int: sentences with at least one comparable row",
        "spearman": "float: mean over sentences of the mean per-row Spearman correlation (rows with >= 3"
        " valid entries, scored and non-constant in both methods)",
    },
    "token_types.parquet": {
        "method": "string",
        "layer": "int",
        "token_id": "int",
        "token": "string: the raw piece, as the tokenizer writes it (`Ġhas`)",
        "text": "string: what the piece reads as on its own (`has`; vzcore.tokens.token_text), `�` for"
        " bytes of a character it holds only part of",
        "count": "int: occurrences in scored rows with at least two valid entries",
        "kept": "float: mean diagonal entry of the token's rows (mass it keeps); single-entry rows left out",
        "given": "float: mean, over its occurrences, of the mean mass it gives to one other scored row",
    },
    "top_examples.parquet": {
        "statistic": "string: self_mass, context_mass or special_mass: an example's mean over its rows that count"
        " (as `vz query top` computes it)",
        "method": "string",
        "layer": "int",
        "rank": "int: 0 for the highest; the `top_examples` highest are kept (ties: the lower id first)",
        "example_id": "int",
        "value": "float: the example's statistic",
        "length": "int: the example's tokens",
    },
}


def _bucket_rows(spec: StatsSpec, arr: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Return `("all", sum over buckets)` and each bucket's slice of `arr` (buckets on axis 1)."""
    out = [("all", arr.sum(1))]
    out += [(label, arr[:, b]) for b, label in enumerate(spec.bucket_labels())]
    return out


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def stats_tables(stats: PartialStats, layers: list[int], near_max: int, top_types: int) -> dict[str, object]:
    """Return the output tables (pandas DataFrames) of merged statistics."""
    import pandas as pd

    spec, s = stats.spec, stats.sums
    offsets = spec.offsets()
    dist = np.abs(offsets)
    sel = {
        "prev_mass": offsets == -1,
        "next_mass": offsets == 1,
        "near_mass": (dist >= 2) & (dist <= near_max),
        "far_mass": dist > near_max,
    }
    examples = [("all", s["examples"].sum()), *list(zip(spec.bucket_labels(), s["examples"], strict=True))]
    rows, dist_rows = [], []
    for b, (label, ex) in enumerate(examples):
        pick = (lambda a: a.sum(1)) if b == 0 else (lambda a, b=b: a[:, b - 1])
        r = pick(s["rows"])
        cols = {k: pick(s[k]) for k in ("self_mass", "context_mass", "special_mass", "punct_mass")}
        ent, ent_rows, zero = pick(s["entropy_sum"]), pick(s["entropy_rows"]), pick(s["zero_rows"])
        single = pick(s["single_rows"])
        om, oc = pick(s["offset_mass"]), pick(s["offset_count"])
        for mi, method in enumerate(spec.methods):
            for li, layer in enumerate(layers):
                row = {"method": method, "layer": layer, "bucket": label, "examples": int(ex), "rows": int(r[mi, li])}
                row.update({k: _div(v[mi, li], r[mi, li]).item() for k, v in cols.items()})
                row.update({k: _div(om[mi, li][m].sum(), r[mi, li]).item() for k, m in sel.items()})
                row["entropy"] = _div(ent[mi, li], ent_rows[mi, li]).item()
                row["entropy_rows"] = int(ent_rows[mi, li])
                row["single_rows"] = int(single[mi, li])
                row["zero_rows"] = int(zero[mi, li])
                rows.append(row)
                for oi, off in enumerate(offsets):
                    dist_rows.append(
                        {
                            "method": method,
                            "layer": layer,
                            "bucket": label,
                            "offset": int(off),
                            "overflow": oi in (0, len(offsets) - 1),
                            "mass": _div(om[mi, li, oi], r[mi, li]).item(),
                            "mass_per_entry": _div(om[mi, li, oi], oc[mi, li, oi]).item(),
                            "entries": int(oc[mi, li, oi]),
                        }
                    )
    agree = []
    for label, a_sum in _bucket_rows(spec, s["agree_sum"]):
        a_count = s["agree_count"].sum(1) if label == "all" else s["agree_count"][:, spec.bucket_labels().index(label)]
        for pi, (a, c) in enumerate(spec.pairs):
            for li, layer in enumerate(layers):
                agree.append(
                    {
                        "method_a": a,
                        "method_b": c,
                        "layer": layer,
                        "bucket": label,
                        "sentences": int(a_count[pi, li]),
                        "spearman": _div(a_sum[pi, li], a_count[pi, li]).item(),
                    }
                )
    return {
        "layers.parquet": pd.DataFrame(rows),
        "distance.parquet": pd.DataFrame(dist_rows),
        "agreement.parquet": pd.DataFrame(agree, columns=list(SCHEMA["agreement.parquet"])),
        "token_types.parquet": _type_table(stats, layers, top_types),
        **({} if stats.top is None else {"top_examples.parquet": _top_table(stats, layers)}),
    }


def _top_table(stats: PartialStats, layers: list[int]):
    import pandas as pd

    assert stats.top is not None
    columns = list(SCHEMA["top_examples.parquet"])
    return pd.DataFrame(stats.top.columns(list(stats.spec.methods), layers), columns=columns)


def _type_table(stats: PartialStats, layers: list[int], top: int):
    import pandas as pd

    t = dict(zip(TYPE_SUMS, stats.type_sums, strict=True))  # each `[M, L, U]`
    order = np.argsort(-t["kept_count"].sum((0, 1)), kind="stable")[:top]
    scheme = vocabulary_scheme(list(stats.type_tokens.values()))
    rows = []
    for u in order:
        tid = int(stats.type_ids[u])
        token = stats.type_tokens.get(tid, "")
        for mi, method in enumerate(stats.spec.methods):
            for li, layer in enumerate(layers):
                rows.append(
                    {
                        "method": method,
                        "layer": layer,
                        "token_id": tid,
                        "token": token,
                        "text": token_text(token, scheme) if token else "",
                        "count": int(t["kept_count"][mi, li, u]),
                        "kept": _div(t["kept_sum"][mi, li, u], t["kept_count"][mi, li, u]).item(),
                        "given": _div(t["given_sum"][mi, li, u], t["given_count"][mi, li, u]).item(),
                    }
                )
    return pd.DataFrame(rows, columns=list(SCHEMA["token_types.parquet"]))


def report(summary: dict, tables: dict) -> str:
    """Return the Markdown report of an aggregate: its summary and the per-layer table."""
    layers = tables["layers.parquet"]
    overall = layers[layers.bucket == "all"]
    lines = [
        f"# Aggregate of `{summary['store']}`",
        "",
        f"Model `{summary['model']}`, methods {', '.join(summary['methods'])}, layers {summary['layers']}"
        f" ({'causal' if summary['causal'] else 'encoder'}).",
        f"Examples: {summary['examples']}; tokens: {summary['tokens']}; parts used: {len(summary['parts_used'])}.",
    ]
    if not summary["complete"]:
        lines.append(f"**Partial store**: parts left out: {summary['parts_skipped']}.")
    lines += ["", "## Per layer (all lengths)", ""]
    lines.append("| method | layer | self | context | special | punct | prev | next | entropy |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for r in overall.itertuples():
        lines.append(
            f"| {r.method} | {r.layer} | {r.self_mass:.3f} | {r.context_mass:.3f} | {r.special_mass:.3f}"
            f" | {r.punct_mass:.3f} | {r.prev_mass:.3f} | {r.next_mass:.3f} | {r.entropy:.3f} |"
        )
    agree = tables["agreement.parquet"]
    agree = agree[agree.bucket == "all"]
    if len(agree):
        lines += ["", "## Method agreement (mean Spearman, all lengths)", ""]
        for (a, b), g in agree.groupby(["method_a", "method_b"], sort=False):
            lines.append(f"- {a} vs {b}: " + ", ".join(f"L{r.layer} {r.spearman:.2f}" for r in g.itertuples()))
    lines += ["", "## Files", ""]
    lines += [f"- ![{p}]({p})" for p in summary.get("plots", [])]
    lines += [f"- [{t}]({t})" for t in summary["outputs"]]
    lines += ["- [summary.json](summary.json)", "", "Column meanings: `jobs.aggregate.report.SCHEMA`.", ""]
    return "\n".join(lines)
