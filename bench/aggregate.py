"""Benchmark `vz aggregate` on random but valid maps: throughput against a plain read of the maps, and memory.

    python -m bench.aggregate --examples 3000 --out /tmp/vz-bench
    python -m bench.aggregate --examples 3000 --out /tmp/vz-bench --mode memory
    python -m bench.aggregate --store runs/minilm.zarr   # an existing store (real maps) instead of a built one
    python -m bench.aggregate --quick   # a small run of every code path (the test suite runs it)

The default mode builds one store with `write_part` (MiniLM-shaped by default: 6 layers, 3
methods, 8 to 64 tokens, float16; `--causal` for lower-triangular maps) and, in one run, times on it:
(a) the floor, a plain NumPy pass that reads (decompresses) every done part's score arrays and sums
them, and (b) the aggregator (no plots), each in this process and then on a local Ray cluster of
`--workers` CPUs (the floor as a numpy-only step through the same Ray executor, one task per part).
Throughput is in MB/s of stored maps: the bytes of the files under each part's `scores/` group. The
best of `--repeats` timed runs counts, after one untimed run (warm page cache, started Ray workers,
the statistics kernel compiled or loaded from numba's cache); the floor and the aggregator take turns, so
that a machine shared with other work slows both alike. In this process the CPU time is printed too
(the ratio that load on other cores disturbs least). `--store` times an existing store instead.

`--mode memory` aggregates a third of the examples and all of them, each in a fresh child process,
so that its peak resident memory (ru_maxrss) is the aggregation's alone.
The maps are random rows that sum to 1: fine for throughput, meaningless as statistics.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer

from vzcore.store.location import Location
from vzcore.store.root import RootAttrs

CHILD = """
import json, sys, time, resource
from jobs.aggregate import AggregateConfig, aggregate
t = time.perf_counter()
s = aggregate(sys.argv[1], sys.argv[2], config=AggregateConfig(plots=sys.argv[3] == "1"), overwrite=True,
              log=lambda *a: None)
print(json.dumps({"seconds": time.perf_counter() - t, "examples": s["examples"], "tokens": s["tokens"],
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


@dataclass(frozen=True)
class ReadJob:
    """One part for the floor: read each method's scores array whole and sum it."""

    location: Location
    info: RootAttrs
    part: int


def read_part(replica: None, job: ReadJob, progress=None) -> float:
    """Return the sum of one part's score arrays, read through the store's reader (the floor's step)."""
    from vzcore.store.layout import SCORES_GROUP
    from vzcore.store.reader import open_part

    reader = open_part(job.location, job.part, job.info)
    return float(sum(reader.array(f"{SCORES_GROUP}/{m}").sum(dtype=np.float64) for m in job.info.methods))


def stored_score_bytes(store) -> int:
    """Return the bytes of every file under the done parts' `scores/` groups (chunk or shard files alike)."""
    from vzcore.store.layout import SCORES_GROUP, part_path

    total = 0
    for k in store.done_parts():
        fs, path = store.location.filesystem(f"{part_path(k)}/{SCORES_GROUP}")
        total += int(fs.du(path, total=True))
    return total


def _best(runs: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Return each run's fastest `(wall, CPU of this process)` seconds in `repeats` turns, after an untimed call."""
    for run in runs.values():
        run()
    best = {name: (float("inf"), float("inf")) for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def _throughput(store_path: Path, out: Path, workers: int, repeats: int, every: int = 4) -> None:
    from cluster.connect import connect
    from cluster.executor import InProcessExecutor, Unit
    from jobs.aggregate import AggregateConfig, aggregate
    from vzcore.statistics import kernel
    from vzcore.store.reader import open_store

    kernel.kernel_for(kernel.LOAD_AFTER)  # in this process, time the compiled kernel even on a small store
    store = open_store(store_path)
    mb = stored_score_bytes(store) / 2**20
    units = [Unit(k, ReadJob(store.location, store.info, k)) for k in store.done_parts()]
    config = AggregateConfig(plots=False)

    def floor(executor) -> None:
        report = executor.run(units, read_part)
        assert not report.lost, report.lost

    def aggregator(address: str | None, where: Path = out, cfg: AggregateConfig = config) -> None:
        aggregate(str(store_path), where, address=address, config=cfg, overwrite=True, log=lambda *a: None)

    sampled_out = out.with_name(f"{out.name}-every{every}")
    sampled = AggregateConfig(plots=False, agreement_every=every)
    local = _best(
        {
            "floor": lambda: floor(InProcessExecutor()),
            "agg": lambda: aggregator(None),
            "sampled": lambda: aggregator(None, sampled_out, sampled),
            # what keeping the top examples (top_examples.parquet) costs: the same run without the table
            "no_top": lambda: aggregator(
                None, out.with_name(f"{out.name}-notop"), AggregateConfig(plots=False, top_examples=0)
            ),
        },
        repeats,
    )
    with connect(None, num_cpus=workers) as cluster:
        import ray

        from cluster.ray_executor import RayExecutor

        address = ray.get_runtime_context().gcs_address  # `aggregate` joins the cluster started here
        ray_cpus = int(cluster.resources.get("CPU", 0))
        on_ray = _best({"floor": lambda: floor(RayExecutor()), "agg": lambda: aggregator(address)}, repeats)
    print(
        f"store {store_path}: {len(units)} parts, {store.num_examples} examples, {len(store.methods)} methods,"
        f" {len(store.layers)} layers, {'causal' if store.causal else 'encoder'}; {mb:.1f} MB of stored maps"
    )
    rows = [
        ("numpy read+sum, in-process", local["floor"], local["floor"], True),
        ("aggregator, in-process", local["agg"], local["floor"], True),
        (f"  agreement from 1 row in {every}", local["sampled"], local["floor"], True),
        ("  without top_examples", local["no_top"], local["floor"], True),
        (f"numpy read+sum, Ray {ray_cpus} workers", on_ray["floor"], on_ray["floor"], False),
        (f"aggregator, Ray {ray_cpus} workers", on_ray["agg"], on_ray["floor"], False),
    ]
    for name, (wall, cpu), (floor_wall, floor_cpu), here in rows:
        line = f"  {name:34s} {wall:7.2f} s  {mb / wall:7.1f} MB/s  {wall / floor_wall:4.2f}x the numpy pass"
        if here:  # the CPU time of this process is the whole run's only when it runs here
            line += f"  (CPU {cpu:6.2f} s, {cpu / floor_cpu:4.2f}x)"
        print(line)
    _sampling_error(out, sampled_out, every)


def _sampling_error(exact_out: Path, sampled_out: Path, every: int) -> None:
    """Print how far the sampled agreement is from the exact one, over every (pair, layer, bucket) row."""
    import pandas as pd

    keys = ["method_a", "method_b", "layer", "bucket"]
    exact = pd.read_parquet(exact_out / "agreement.parquet").set_index(keys)
    sampled = pd.read_parquet(sampled_out / "agreement.parquet").set_index(keys)
    if exact.empty:
        return
    diff = (sampled["spearman"] - exact["spearman"]).abs()
    overall = diff.xs("all", level="bucket")
    print(
        f"  agreement from 1 row in {every}: |sampled - exact| Spearman, bucket 'all': max {overall.max():.4f},"
        f" mean {overall.mean():.4f}; any bucket: max {diff.max():.4f}"
        f" (sentences {int(sampled['sentences'].xs('all', level='bucket').sum())}"
        f" of {int(exact['sentences'].xs('all', level='bucket').sum())})"
    )


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in (path / "parts").rglob("*") if f.is_file())


def _run(store: Path, out: Path, plots: bool) -> dict:
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(store), str(out), "1" if plots else "0"],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def _memory(stores: list[tuple[int, Path]], out: Path) -> None:
    for n, store in stores:
        mb = _bytes(store) / 2**20
        for plots in (False, True):
            r = _run(store, out / f"{store.stem}.aggregate", plots)
            scored = r["examples"].get("scored", 0)
            print(
                f"{n:6d} examples ({scored} scored, {r['tokens']} tokens, {mb:.1f} MB stored float16)"
                f" plots={'on ' if plots else 'off'}: {r['seconds']:.2f}s,"
                f" {scored / r['seconds']:.0f} examples/s, {mb / r['seconds']:.1f} MB/s,"
                f" peak RSS {r['maxrss_mb']:.0f} MB"
            )
    print(f"(driver peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, incl. building)")


def main(
    examples: int = 3000,
    out: Path = Path("/tmp/vz-bench"),
    layers: int = 6,
    causal: bool = False,
    part_size: int = 250,
    max_len: int = 64,
    mode: str = typer.Option("throughput", help="throughput (against a plain read, locally and on Ray) or memory"),
    workers: int = typer.Option(2, help="CPUs of the local Ray cluster (throughput mode)"),
    repeats: int = typer.Option(3, help="timed runs of each measurement; the fastest counts"),
    quick: bool = typer.Option(False, help="a small run of every code path in a temporary folder (the tests run it)"),
    store: Path | None = typer.Option(None, help="time this existing store (throughput mode) instead of a built one"),
    agreement_every: int = typer.Option(4, min=1, help="also time agreement from 1 row in N, and print its error"),
) -> None:
    """Build the store(s) if absent, then print the figures of `mode`."""
    if quick:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="vz-bench-") as tmp:
            main(60, Path(tmp), 2, causal, 20, 16, mode, workers, 1, False, None, agreement_every)
        return
    if store is not None:
        if mode != "throughput":
            raise typer.BadParameter("--store times throughput only")
        out.mkdir(parents=True, exist_ok=True)
        _throughput(store, out / f"{store.name}.aggregate", workers, repeats, agreement_every)
        return
    from tests.harness.synthetic_store import write_random_store

    if mode not in ("throughput", "memory"):
        raise typer.BadParameter(f"unknown mode {mode!r}; choose throughput or memory")
    sizes = (examples,) if mode == "throughput" else (examples // 3, examples)
    stores = []
    for n in sizes:
        store = out / f"random-{n}-{layers}l-{'causal' if causal else 'enc'}.zarr"
        if not store.exists():
            t = time.perf_counter()
            write_random_store(
                store, n, num_layers=layers, causal=causal, part_size=part_size, lengths=(8, max_len), fail_every=100
            )
            print(f"built {store} in {time.perf_counter() - t:.1f}s")
        stores.append((n, store))
    if mode == "throughput":
        _throughput(stores[0][1], out / f"{stores[0][1].stem}.aggregate", workers, repeats, agreement_every)
    else:
        _memory(stores, out)


if __name__ == "__main__":
    typer.run(main)
