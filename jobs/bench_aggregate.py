"""Benchmark `vz aggregate`: throughput (examples/s, stored MB/s) and peak memory, on random but valid maps.

    python -m jobs.bench_aggregate --examples 3000 --out /tmp/vz-bench

Builds two stores with `write_part` (a third of the examples, and all of them; MiniLM-shaped by
default: 6 layers, 3 methods, 8 to 64 tokens, float16), then aggregates each in a fresh child
process, so that its peak resident memory (ru_maxrss) is the aggregation's alone. The maps are
random rows that sum to 1: fine for throughput, meaningless as statistics.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import typer

CHILD = """
import json, sys, time, resource
from jobs.aggregate import AggregateConfig, aggregate
t = time.perf_counter()
s = aggregate(sys.argv[1], sys.argv[2], config=AggregateConfig(plots=sys.argv[3] == "1"), overwrite=True,
              log=lambda *a: None)
print(json.dumps({"seconds": time.perf_counter() - t, "examples": s["examples"], "tokens": s["tokens"],
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


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


def main(
    examples: int = 3000,
    out: Path = Path("/tmp/vz-bench"),
    layers: int = 6,
    causal: bool = False,
    part_size: int = 250,
    max_len: int = 64,
) -> None:
    """Build the stores (if absent), aggregate them, print the figures."""
    from jobs.synthetic_store import write_random_store

    for n in (examples // 3, examples):
        store = out / f"random-{n}-{layers}l-{'causal' if causal else 'enc'}.zarr"
        if not store.exists():
            t = time.perf_counter()
            write_random_store(
                store, n, num_layers=layers, causal=causal, part_size=part_size, lengths=(8, max_len), fail_every=100
            )
            print(f"built {store} in {time.perf_counter() - t:.1f}s")
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


if __name__ == "__main__":
    typer.run(main)
