"""Aggregate a v5 store (an encoder–decoder's sites): each site's statistics, saying what they mean there.

The encoder and decoder sites are square: each is read as a single-stack store
(`vzcore.store.reader.Store.site`) and reduced by the same step and tables as any store
(`jobs.aggregate.driver.aggregate_part`, `jobs.aggregate.report`), into `{site}.layers.parquet`, ...
The cross site relates decoder tokens to encoder positions: it has no diagonal, no offsets and no
token that keeps its own mass, so it gets the statistics that apply to it (`vzcore.statistics.cross`)
in `cross.layers.parquet` and `cross.agreement.parquet`. The report says which is which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cluster.executor import Unit
from jobs.aggregate.plots import write_plots
from jobs.aggregate.report import report, stats_tables
from vzcore.statistics import PartialStats, StatsSpec, is_punctuation
from vzcore.statistics.cross import CrossStats
from vzcore.store.layout import STATUS_NAMES
from vzcore.store.location import Location
from vzcore.store.reader import open_part
from vzcore.store.root import RootAttrs

__all__ = ["CROSS_SCHEMA", "CrossJob", "aggregate_cross_part", "aggregate_sites", "pair_report", "site_plots"]

CROSS_SCHEMA = {
    "cross.layers.parquet": {
        "method": "string",
        "layer": "int: block index of the decoder's cross-attention",
        "examples": "int: scored examples",
        "rows": "int: decoder-token rows with at least two source positions, scored (every mean is over these)",
        "special_mass": "float: mean row mass on special source tokens (an audio frame is never special)",
        "punct_mass": "float: mean row mass on punctuation source tokens",
        "max_mass": "float: mean of each row's largest entry (how peaked a row is)",
        "peak_position": "float: mean of argmax_j / (n_src - 1): where a row's strongest source sits, 0 start, 1 end",
        "entropy": "float: mean row entropy / log(n_src); all-zero rows left out",
        "zero_rows": "int: scored rows whose entries are all zero",
    },
    "cross.agreement.parquet": {
        "method_a": "string",
        "method_b": "string",
        "layer": "int",
        "sentences": "int: examples with at least one comparable row",
        "spearman": "float: mean over examples of the mean per-row Spearman (rows of >= 3 sources, non-constant)",
    },
}


@dataclass(frozen=True)
class CrossJob:
    """One part's cross site to reduce."""

    location: Location
    info: RootAttrs
    part: int
    methods: tuple[str, ...]
    num_layers: int


def aggregate_cross_part(replica: None, job: CrossJob, progress=None) -> CrossStats:
    """Return the cross-site statistics of one part (reads only that part)."""
    reader = open_part(job.location, job.part, job.info)
    stats = CrossStats(job.methods, job.num_layers)
    for status, count in zip(*np.unique(reader.status, return_counts=True), strict=True):
        stats.count_status(STATUS_NAMES.get(int(status), str(status)), int(count))
    special_ids = set(job.info.special_token_ids)
    for block in reader.iter_results(list(job.methods)):
        for _, result in block:
            ids, tokens = result.source_ids, result.source_tokens or []
            special = [i in special_ids for i in ids] if ids is not None else [False] * result.n_source
            punct = [is_punctuation(t) and not s for t, s in zip(tokens, special, strict=True)] if ids else special
            stats.add_example({m: x for m, x in result.sites["cross"].scores.items()}, special, punct)
    return stats


def cross_tables(stats: CrossStats, layers: list[int]) -> dict:
    """The cross site's tables (`CROSS_SCHEMA`)."""
    import pandas as pd

    means = stats.means()
    rows = []
    for mi, method in enumerate(stats.methods):
        for li, layer in enumerate(layers):
            rows.append(
                {
                    "method": method,
                    "layer": layer,
                    "examples": stats.examples,
                    "rows": int(stats.sums["rows"][mi, li]),
                    **{k: float(means[k][mi, li]) for k in ("special_mass", "punct_mass", "max_mass", "peak_position")},
                    "entropy": float(means["entropy"][mi, li]),
                    "zero_rows": int(stats.sums["zero_rows"][mi, li]),
                }
            )
    agree = [
        {"method_a": a, "method_b": b, "layer": layer, "sentences": int(stats.agree_count[pi, li]),
         "spearman": float(means["agreement"][pi, li])}
        for pi, (a, b) in enumerate(stats.pairs)
        for li, layer in enumerate(layers)
    ]  # fmt: skip
    return {
        "cross.layers.parquet": pd.DataFrame(rows, columns=list(CROSS_SCHEMA["cross.layers.parquet"])),
        "cross.agreement.parquet": pd.DataFrame(agree, columns=list(CROSS_SCHEMA["cross.agreement.parquet"])),
    }


def aggregate_sites(store, parts, executor, location: Location, config, step, part_job) -> tuple[dict, dict, dict]:
    """Reduce every site of a v5 store's done `parts` through `executor`; return the tables (file name ->
    frame), each site's merged statistics (`PartialStats`; the cross site's `CrossStats`) and the parts
    lost. `step` and `part_job` are the single-stack step and its unit (`jobs.aggregate.driver`)."""
    tables: dict = {}
    partials: dict = {}
    lost: dict = {}
    for layout in store.info.site_layouts:
        info = store.info.site_view(layout.name)
        if layout.square:
            spec = StatsSpec(
                tuple(store.methods), len(layout.layers), layout.causal, tuple(config.bucket_edges),
                config.max_offset, top_k=config.top_examples, agreement_every=config.agreement_every,
            )  # fmt: skip
            total = PartialStats(spec)
            units = [Unit(k, part_job(location, info, k, spec)) for k in parts]
            run = executor.run(units, step, on_result=lambda unit, partial, t=total: t.merge(partial))
            site_tables = stats_tables(total, list(layout.layers), config.near_max, config.top_types)
            if store.info.audio and layout.rows == "source":  # audio frames have no token types (ids all -1)
                site_tables.pop("token_types.parquet")
            tables |= {f"{layout.name}.{name}": frame for name, frame in site_tables.items()}
        else:
            total = CrossStats(tuple(store.methods), len(layout.layers))
            full = store.info  # the cross site is read from the pairs, every site's values at once
            units = [Unit(k, CrossJob(location, full, k, tuple(store.methods), len(layout.layers))) for k in parts]
            run = executor.run(units, aggregate_cross_part, on_result=lambda unit, partial, t=total: t.merge(partial))
            tables |= cross_tables(total, list(layout.layers))
        partials[layout.name] = total
        lost |= run.lost
    return tables, partials, lost


def site_plots(tables: dict, staged, sites: list[str]) -> list[str]:
    """Each square site's plots, named `{site}.{plot}.png`."""
    import tempfile
    from pathlib import Path

    names = []
    for site in sites:
        mine = {name.split(".", 1)[1]: frame for name, frame in tables.items() if name.startswith(f"{site}.")}
        if "layers.parquet" not in mine or "distance.parquet" not in mine:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            for plot in write_plots(mine, Path(tmp)):
                (Path(tmp) / plot).rename(Path(staged) / f"{site}.{plot}")
                names.append(f"{site}.{plot}")
    return names


def pair_report(summary: dict, tables: dict) -> str:
    """The report of a v5 aggregate: each square site's per-layer table, then the cross site's."""
    lines = [
        f"# Aggregate of `{summary['store']}` (an encoder-decoder's sites)",
        "",
        f"Model `{summary['model']}`, methods {', '.join(summary['methods'])}; examples {summary['examples']}.",
        "The encoder and decoder sites are square (their maps relate a stream to itself): their statistics are"
        " those of any store. The cross site relates decoder tokens (rows) to source positions (columns): it has"
        " no diagonal, no offsets j - i and no token that keeps its own mass, so only the statistics below apply.",
    ]
    for site in summary["sites"]:
        if site["name"] == "cross":
            continue
        mine = {name.split(".", 1)[1]: f for name, f in tables.items() if name.startswith(f"{site['name']}.")}
        sub = {**summary, "store": f"{summary['store']}, site {site['name']}", "layers": site["layers"],
               "causal": site["causal"], "outputs": [], "plots": []}  # fmt: skip
        body = report(sub, mine).split("\n## Files")[0].splitlines()[4:]  # its tables, not its title or files
        lines += ["", f"## Site {site['name']}", ""] + [f"#{line}" if line.startswith("## ") else line for line in body]
    if "cross.layers.parquet" in tables:
        lines += ["", "## Site cross (decoder tokens reading source positions)", ""]
        lines.append("| method | layer | special | punct | max | peak position | entropy |")
        lines.append("|---|---|---|---|---|---|---|")
        for r in tables["cross.layers.parquet"].itertuples():
            lines.append(
                f"| {r.method} | {r.layer} | {r.special_mass:.3f} | {r.punct_mass:.3f} | {r.max_mass:.3f}"
                f" | {r.peak_position:.3f} | {r.entropy:.3f} |"
            )
        for r in tables["cross.agreement.parquet"].itertuples():
            lines.append(f"- {r.method_a} vs {r.method_b}, layer {r.layer}: Spearman {r.spearman:.2f}")
    lines += ["", "## Files", ""] + [f"- {p}" for p in summary.get("plots", [])]
    lines += [f"- {t}" for t in summary["outputs"]] + ["", "Column meanings: `jobs.aggregate.report.SCHEMA`,"
              " `jobs.aggregate.pairs.CROSS_SCHEMA`.", ""]  # fmt: skip
    return "\n".join(lines)
