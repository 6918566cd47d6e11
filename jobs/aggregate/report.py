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
        " valid entries, scored and non-constant in both methods; with --agreement-every N only row i of"
        " layer index l where (i + l) % N == 0)",
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


def _by_bucket(arr: np.ndarray) -> np.ndarray:
    """Return `[1 + B, ...]`: the sum over buckets ("all"), then each bucket, from `arr` with buckets on axis 1."""
    return np.concatenate([arr.sum(1)[None], np.moveaxis(arr, 1, 0)])


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return `a / b` where `b > 0`, NaN elsewhere (a mean over no rows is undefined), elementwise."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def _grid(*sizes: int) -> list[np.ndarray]:
    """Return one flat index array per axis of a C-ordered grid of `sizes` (the tables' row order)."""
    return [g.ravel() for g in np.indices(sizes)]


def stats_tables(stats: PartialStats, layers: list[int], near_max: int, top_types: int) -> dict[str, object]:
    """Return the output tables (pandas DataFrames) of merged statistics.

    Every column is computed for all rows at once: rows run over bucket ("all", then each bucket),
    then method (or method pair), then layer (then offset, for the distance table).
    """
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
    buckets = np.asarray(["all", *spec.bucket_labels()], dtype=object)
    methods, layer_ids = np.asarray(spec.methods, dtype=object), np.asarray(layers, dtype=np.int64)
    examples = np.concatenate([[s["examples"].sum()], s["examples"]]).astype(np.int64)  # `[1 + B]`
    per = {k: _by_bucket(v) for k, v in s.items() if v.ndim >= 3}  # `[1 + B, M or pairs, L, ...]`
    nb, nm, nl = len(buckets), len(spec.methods), len(layers)
    b, m, li = _grid(nb, nm, nl)
    r = per["rows"].ravel()
    cols: dict[str, object] = {
        "method": methods[m],
        "layer": layer_ids[li],
        "bucket": buckets[b],
        "examples": examples[b],
        "rows": r.astype(np.int64),
    }
    cols.update({k: _div(per[k].ravel(), r) for k in ("self_mass", "context_mass", "special_mass", "punct_mass")})
    om, oc = per["offset_mass"], per["offset_count"]  # `[1 + B, M, L, offsets]`
    cols.update({k: _div(om[..., pick].sum(-1).ravel(), r) for k, pick in sel.items()})
    cols["entropy"] = _div(per["entropy_sum"].ravel(), per["entropy_rows"].ravel())
    for k in ("entropy_rows", "single_rows", "zero_rows"):
        cols[k] = per[k].ravel().astype(np.int64)
    b, m, li, oi = _grid(nb, nm, nl, len(offsets))
    dist_cols = {
        "method": methods[m],
        "layer": layer_ids[li],
        "bucket": buckets[b],
        "offset": offsets[oi].astype(np.int64),
        "overflow": (oi == 0) | (oi == len(offsets) - 1),
        "mass": _div(om.ravel(), np.repeat(r, len(offsets))),
        "mass_per_entry": _div(om.ravel(), oc.ravel()),
        "entries": oc.ravel().astype(np.int64),
    }
    return {
        "layers.parquet": pd.DataFrame(cols),
        "distance.parquet": pd.DataFrame(dist_cols),
        "agreement.parquet": _agreement_table(spec, per, buckets, layer_ids),
        "token_types.parquet": _type_table(stats, layers, top_types),
        **({} if stats.top is None else {"top_examples.parquet": _top_table(stats, layers)}),
    }


def _top_table(stats: PartialStats, layers: list[int]):
    import pandas as pd

    assert stats.top is not None
    columns = list(SCHEMA["top_examples.parquet"])
    return pd.DataFrame(stats.top.columns(list(stats.spec.methods), layers), columns=columns)


def _agreement_table(spec: StatsSpec, per: dict[str, np.ndarray], buckets: np.ndarray, layer_ids: np.ndarray):
    import pandas as pd

    columns = list(SCHEMA["agreement.parquet"])
    pairs = spec.pairs
    if not pairs:
        return pd.DataFrame([], columns=columns)
    b, p, li = _grid(len(buckets), len(pairs), len(layer_ids))
    count = per["agree_count"].ravel()
    cols = {
        "method_a": np.asarray([a for a, _ in pairs], dtype=object)[p],
        "method_b": np.asarray([c for _, c in pairs], dtype=object)[p],
        "layer": layer_ids[li],
        "bucket": buckets[b],
        "sentences": count.astype(np.int64),
        "spearman": _div(per["agree_sum"].ravel(), count),
    }
    return pd.DataFrame(cols, columns=columns)


def _type_table(stats: PartialStats, layers: list[int], top: int):
    """Return the `top` most frequent token types' rows; each type's text is decoded once."""
    import pandas as pd

    t = dict(zip(TYPE_SUMS, stats.type_sums, strict=True))  # each `[M, L, U]`
    order = np.argsort(-t["kept_count"].sum((0, 1)), kind="stable")[:top]
    scheme = vocabulary_scheme(list(stats.type_tokens.values()))
    ids = stats.type_ids[order].astype(np.int64)
    tokens = [stats.type_tokens.get(int(tid), "") for tid in ids.tolist()]
    texts = np.asarray([token_text(tok, scheme) if tok else "" for tok in tokens], dtype=object)
    u, m, li = _grid(len(order), len(stats.spec.methods), len(layers))
    pick = {k: np.moveaxis(v[..., order], -1, 0).ravel() for k, v in t.items()}  # `[top * M * L]`, type first
    cols = {
        "method": np.asarray(stats.spec.methods, dtype=object)[m],
        "layer": np.asarray(layers, dtype=np.int64)[li],
        "token_id": ids[u],
        "token": np.asarray(tokens, dtype=object)[u],
        "text": texts[u],
        "count": pick["kept_count"].astype(np.int64),
        "kept": _div(pick["kept_sum"], pick["kept_count"]),
        "given": _div(pick["given_sum"], pick["given_count"]),
    }
    return pd.DataFrame(cols, columns=list(SCHEMA["token_types.parquet"]))


def _units(summary: dict) -> str:
    """What a row of the maps is: a token, or a word in a words store (whose rows count words)."""
    return "words" if (summary.get("store_form") or {}).get("kind") == "words" else "tokens"


def report(summary: dict, tables: dict) -> str:
    """Return the Markdown report of an aggregate: its summary and the per-layer table."""
    layers = tables["layers.parquet"]
    overall = layers[layers.bucket == "all"]
    lines = [
        f"# Aggregate of `{summary['store']}`",
        "",
        f"Model `{summary['model']}`, methods {', '.join(summary['methods'])}, layers {summary['layers']}"
        f" ({'causal' if summary['causal'] else 'encoder'}).",
        f"Examples: {summary['examples']}; {_units(summary)}: {summary['tokens']}; "
        f"parts used: {len(summary['parts_used'])}.",
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
        every = summary.get("config", {}).get("agreement_every", 1)
        sampled = f"; ranks from one row in {every}, `--agreement-every`" if every > 1 else ""
        lines += ["", f"## Method agreement (mean Spearman, all lengths{sampled})", ""]
        for (a, b), g in agree.groupby(["method_a", "method_b"], sort=False):
            lines.append(f"- {a} vs {b}: " + ", ".join(f"L{r.layer} {r.spearman:.2f}" for r in g.itertuples()))
    lines += ["", "## Files", ""]
    lines += [f"- ![{p}]({p})" for p in summary.get("plots", [])]
    lines += [f"- [{t}]({t})" for t in summary["outputs"]]
    lines += ["- [summary.json](summary.json)", "", "Column meanings: `jobs.aggregate.report.SCHEMA`.", ""]
    return "\n".join(lines)
