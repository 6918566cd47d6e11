"""Aggregate a store into corpus statistics: Parquet tables, PNG plots and a short report.

    python -m jobs.aggregate runs/minilm.zarr --out runs/minilm.aggregate
    vz aggregate runs/minilm.zarr --out runs/minilm.aggregate --address 127.0.0.1:6379
    vz aggregate runs/minilm.zarr --actors 2            # 2 Ray tasks at once on a local cluster

One streaming pass: each done part is read once, in blocks of examples, and reduced to float64
sums (`vzcore.statistics.PartialStats`), which merge by addition. Memory stays at one block plus
one partial per part in flight, whatever the corpus size. The parts run through an executor
(`cluster.where`): in this process unless `--address` or `--actors N` says Ray, then as Ray tasks,
one step (`aggregate_part`) either way. Tables and the report: `jobs.aggregate.report`.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cluster.credentials import public_options
from cluster.executor import Unit
from cluster.where import Where, open_executor
from jobs.aggregate.out import REPORT, SUMMARY, AggregateOut, store_source
from jobs.aggregate.pairs import aggregate_sites, pair_report, site_plots
from jobs.aggregate.plots import write_plots
from jobs.aggregate.report import report, stats_tables
from vzcore.statistics import ExampleBlock, PartialStats, StatsSpec, add_block, is_punctuation, kernel
from vzcore.store.layout import STATUS_NAMES, STATUS_SCORED
from vzcore.store.location import Location
from vzcore.store.reader import StoreError, open_part, open_store
from vzcore.store.root import RootAttrs

__all__ = ["AggregateConfig", "PartJob", "aggregate", "aggregate_part", "default_out"]


@dataclass(frozen=True)
class AggregateConfig:
    """Options of one aggregation run."""

    bucket_edges: tuple[int, ...] = (1, 16, 32, 64, 128, 256, 512)  # lower bounds of the length buckets
    max_offset: int = 16  # relative positions |j - i| profiled one by one; beyond fall in overflow bins
    near_max: int = 5  # "near" context is 2 <= |j - i| <= near_max, "far" is beyond
    top_types: int = 200  # token types (most frequent) kept in token_types.parquet
    top_examples: int = 1000  # highest examples kept per statistic, method and layer (top_examples.parquet; 0: none)
    agreement_every: int = 1  # agreement from every row (exact), or every N-th row (`StatsSpec.agreement_every`)
    plots: bool = True


@dataclass(frozen=True)
class PartJob:
    """One part to aggregate: where the store is, what its root says, and what to compute."""

    location: Location
    info: RootAttrs
    part: int
    spec: StatsSpec
    block_values: int = 1 << 22  # flat values per method read and reduced at once (memory: ~100 bytes each)


def aggregate_part(replica: None, job: PartJob, progress=None) -> PartialStats:
    """Return the partial statistics of one part (the step every executor runs; it reads only that part)."""

    reader = open_part(job.location, job.part, job.info)
    stats = PartialStats(job.spec)
    for status, count in zip(*np.unique(reader.status, return_counts=True), strict=True):
        stats.count_status(STATUS_NAMES.get(int(status), str(status)), int(count))
    special_ids = np.asarray(job.info.special_token_ids, dtype=np.int64)
    # A part big enough to pay for loading the compiled kernel gets it from its first block.
    kernel.expect(int(reader.dense_offset[-1]) * len(job.spec.methods) if len(reader.dense_offset) else 0)
    tokens: dict[int, str] = {}  # token string of each id seen in the part
    punct: dict[int, bool] = {}  # whether each id seen reads as punctuation
    for block, ids, pieces in _read_ahead(_blocks(reader, job.spec.methods, job.block_values)):
        new, first, where = np.unique(ids, return_index=True, return_inverse=True)
        for tid, k in zip(new.tolist(), first.tolist(), strict=True):
            if tid not in tokens:
                tokens[tid] = str(pieces[k])
                punct[tid] = is_punctuation(tokens[tid])
        is_special = np.isin(ids, special_ids)
        is_punct = np.asarray([punct[t] for t in new.tolist()], dtype=bool)[where] & ~is_special
        add_block(
            stats,
            ExampleBlock(
                length=block["length"],
                token_ids=ids,
                values=block["values"],
                special=is_special,
                punct=is_punct,
                example_id=block["example_id"],
                tokens=block["tokens"],
            ),
            tokens,
        )
    if stats.top is not None:
        stats.top.flush()  # the part's best k travel back, not every offer
    return stats


def _read_ahead(blocks):
    """Yield the items of `blocks`, the next one read in a thread while the caller reduces this one.

    The compiled kernel releases the GIL, so with a second core a part costs about the larger of
    its reading and its reduction rather than their sum; one block more is held in memory."""
    with ThreadPoolExecutor(1, thread_name_prefix="vz-aggregate-read") as pool:
        ahead = pool.submit(next, blocks, None)
        while (item := ahead.result()) is not None:
            ahead = pool.submit(next, blocks, None)
            yield item


def _blocks(reader, methods, max_values: int):
    """Yield `(block, token ids [T], tokens [T])` per run of examples holding about `max_values` values per method.

    `block` has the scored examples' `length` `[E]` and `values[method]`: E flat arrays packed as
    dense v3 maps (a reduced part is made dense by the reader: rows not held NaN, entries not kept 0).
    A words part's units are its words (`PartReader.unit_types`): lengths, ids and pieces are theirs.
    """

    m = len(reader.example_id)
    # Blocks sized by their dense values; a unit is a row of the maps: a token, or a words part's word.
    vo, to = reader.dense_offset, reader.unit_offset
    start = 0
    while start < m:
        stop = int(np.searchsorted(vo, vo[start] + max_values, side="right")) - 1
        stop = min(max(stop, start + 1), m)
        ks = np.flatnonzero(reader.status[start:stop] == STATUS_SCORED) + start
        if len(ks):
            first, last = int(reader.example_id[start]), int(reader.example_id[stop - 1])
            span = f"example {first}" if first == last else f"examples {first}..{last}"
            token_ids, pieces = reader.unit_types(start, stop, span)
            take = np.concatenate([np.arange(to[k], to[k + 1]) for k in ks]) - int(to[start])
            values = {meth: reader.packed_values(start, stop, ks, meth, span) for meth in methods}
            ids = np.asarray(token_ids[take], dtype=np.int64)
            block = {
                "length": np.diff(to)[ks].astype(np.int64),
                "example_id": np.asarray(reader.example_id[ks], dtype=np.int64),
                "tokens": np.asarray(reader.length[ks], dtype=np.int64),  # what the top examples report
                "values": values,
            }
            yield block, ids, pieces[take]
        start = stop


def _publish(target, previous, source, log, tables: dict, summary: dict, plots, report_of) -> None:
    """Write an aggregate's tables, plots (`plots(folder)` gives their names; None: none), report and
    summary into a staging folder, then publish it whole in place of `previous` (`jobs.aggregate.out`)."""
    with target.staging() as staged:
        for name, frame in tables.items():
            frame.to_parquet(staged / name, index=False)
        if plots is not None:
            summary["plots"] = plots(staged)
        (staged / REPORT).write_text(report_of(summary, tables))
        (staged / SUMMARY).write_text(json.dumps(summary, indent=2))
        target.publish(staged, previous, source, log)


def default_out(store_path: str) -> Path:
    """Where a store's aggregate goes by default: beside a local store, in the working folder for a URL."""
    store_path = store_path.rstrip("/")
    if "://" in store_path:
        return Path(f"{store_path.rsplit('/', 1)[-1]}.aggregate")
    return Path(f"{store_path}.aggregate")


def aggregate(
    store_path: str,
    out: str | Path | None = None,
    *,
    where: Where | None = None,
    address: str | None = None,
    config: AggregateConfig | None = None,
    storage_options: dict | None = None,
    overwrite: bool = False,
    log=print,
) -> dict:
    """Aggregate the done parts of a store into `out` (a folder or an fsspec URL, reached with the
    store's `storage_options`); return the summary (also `out/summary.json`).

    `where` says where the parts are read (`cluster.where.Where`; default: in this process);
    `address` alone is short for `Where.given(actors=None, address=address, in_process=True)`.
    Raises `ValueError` for a `where` that can never run, before the store is opened.

    `out` must be new, empty or this store's aggregate (another store's: with `overwrite`); the
    aggregate appears there whole or not at all (`jobs.aggregate.out`)."""

    if where is not None and address is not None:
        raise ValueError("give where or address, not both")
    where = where or Where.given(actors=None, address=address, in_process=True)
    where.check()
    config = config or AggregateConfig()
    t0 = time.perf_counter()
    store = open_store(store_path, storage_options)
    parts = store.done_parts()
    if not parts:
        raise StoreError(
            f"nothing to aggregate: none of the {len(store.parts)} parts of {store.path} is done for every method"
            f" ({', '.join(store.methods)}); rerun the `vz score` command that made it to finish it"
        )
    source = store_source(store)
    target = AggregateOut(out if out is not None else default_out(str(store_path)), storage_options)
    previous = target.check(store, source, overwrite)  # before any part is read
    skipped = {
        str(p.part): p.problem or f"done only for {list(p.complete)}" for p in store.parts if p.part not in parts
    }
    if skipped:
        log(f"partial store: aggregating {len(parts)} of {len(store.parts)} parts (the finished ones).")
        log(store.describe())
    if store.info.sites:  # layout v5: an encoder-decoder's sites, each with the statistics that apply
        pairs = (parts, skipped, source, target, previous)
        return _aggregate_sites(store, store_path, pairs, where, config, t0, log)
    spec = StatsSpec(
        tuple(store.methods),
        len(store.layers),
        store.causal,
        tuple(config.bucket_edges),
        config.max_offset,
        top_k=config.top_examples,
        agreement_every=config.agreement_every,
    )
    # Workers may run in other working folders: they get the store's absolute path, and its secrets
    # through their environment (`cluster.credentials`), never in a unit.
    path = store.location.absolute()
    location = Location(path, public_options(path, store.location.storage_options))
    units = [Unit(k, PartJob(location, store.info, k, spec)) for k in parts]
    total = PartialStats(spec)  # partials from Ray's object store are read-only: merge into our own arrays
    # The workers only read the store (a shared disk serves every node); the driver writes `out`.
    with open_executor(where, replica=False, inputs=[store.location]) as (executor, _):
        run = executor.run(units, aggregate_part, on_result=lambda unit, partial: total.merge(partial))
    for k, reason in sorted(run.lost.items()):
        log(f"part {k} left out: {reason}")
        skipped[str(k)] = f"could not be read: {reason}"
    seconds = time.perf_counter() - t0
    tables = stats_tables(total, store.layers, config.near_max, config.top_types)
    summary = {
        "store": str(store_path),
        "source": source,
        "identity": store.identity,
        "model": store.config.get("model"),
        "methods": store.methods,
        "layers": store.layers,
        "causal": store.causal,
        # Layout v4: top-k masses are lower bounds, targeted statistics cover the stored rows only
        # (docs/reading-and-aggregating.md); None for a dense store of every row.
        "store_form": store.info.store_form,
        "targets": store.info.targets,
        "parts_used": [k for k in parts if k not in run.lost],
        # each used part's example ids [start, stop): a reader can tell a part that grew under its index
        "part_ranges": {
            str(p.part): [p.start, p.stop] for p in store.parts if p.part in parts and p.part not in run.lost
        },
        "parts_skipped": skipped,
        "complete": not skipped,
        "examples": total.status_counts,
        "tokens": int(total.sums["tokens"].sum()),
        "aggregate_seconds": seconds,
        "config": asdict(config),
        "outputs": sorted(tables),
    }
    plots = (lambda staged: write_plots(tables, staged)) if config.plots else None
    _publish(target, previous, source, log, tables, summary, plots, report)
    return summary


def _aggregate_sites(store, store_path: str, pairs: tuple, where: Where, config: AggregateConfig, t0: float, log):
    """`aggregate` for a v5 store (`jobs.aggregate.pairs`): tables and plots per site, one report."""
    parts, skipped, source, target, previous = pairs
    path = store.location.absolute()
    location = Location(path, public_options(path, store.location.storage_options))
    with open_executor(where, replica=False, inputs=[store.location]) as (executor, _):
        tables, partials, lost = aggregate_sites(store, parts, executor, location, config, aggregate_part, PartJob)
    for k, reason in sorted(lost.items()):
        log(f"part {k} left out: {reason}")
        skipped[str(k)] = f"could not be read: {reason}"
    first = next(iter(partials.values()))
    tokens = {name: int(p.sums["tokens"].sum()) if hasattr(p, "spec") else p.tokens for name, p in partials.items()}
    summary = {
        "store": str(store_path),
        "source": source,
        "identity": store.identity,
        "model": store.config.get("model"),
        "methods": store.methods,
        "sites": store.info.sites,
        "source_kind": store.info.source_kind,
        "layers": store.layers,
        "causal": False,
        "store_form": None,
        "targets": None,
        "parts_used": [k for k in parts if k not in lost],
        "parts_skipped": skipped,
        "complete": not skipped,
        "examples": first.status_counts,
        "tokens": tokens,
        "aggregate_seconds": time.perf_counter() - t0,
        "config": asdict(config),
        "outputs": sorted(tables),
    }
    sites = [s["name"] for s in store.info.sites]
    plots = (lambda staged: site_plots(tables, staged, sites)) if config.plots else None
    _publish(target, previous, source, log, tables, summary, plots, pair_report)
    return summary
