"""How a store's costs grow with its size: open, describe, one example, aggregate; objects and bytes.

    python -m jobs.bench_scale                      # synthetic stores of 10^3 and 10^4 examples, locally
    python -m jobs.bench_scale --sizes 1000,10000,100000 --part-size 32

Prints one row per store size, measured in one run: seconds to `open_store`, `describe()`, read one
example, aggregate (in this process, no plots) and its throughput in MB of stored maps per second,
then the objects (files) and bytes of the store, with each figure's growth from the smallest store
and the linear extrapolation to 10^6 examples. The stores hold random but valid maps (one method,
`--layers` layers, 8 to 24 tokens), written with the store's own writers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def _size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def measure(size: int, part_size: int, layers: int, folder: Path) -> dict:
    """Build one synthetic store of `size` examples and time what a reader and the aggregator do."""
    import vzcore
    from jobs.aggregate import AggregateConfig, aggregate
    from jobs.synthetic_store import write_random_store

    path = folder / f"s{size}.zarr"
    build, _ = _timed(
        lambda: write_random_store(
            path, size, methods=("value_zeroing",), num_layers=layers, part_size=part_size, lengths=(8, 24)
        )
    )
    t_open, store = _timed(lambda: vzcore.open_store(path))
    t_describe, _ = _timed(store.describe)
    t_example, _ = _timed(lambda: store.example(size // 2))
    objects, nbytes = _size(path)
    maps = sum(p.stat().st_size for p in path.glob("parts/*/scores/*/c/*"))
    config = AggregateConfig(plots=False)
    t_agg, _ = _timed(lambda: aggregate(str(path), folder / f"agg{size}", config=config, log=lambda *a: None))
    return {
        "examples": size,
        "parts": -(-size // part_size),
        "build_s": build,
        "open_s": t_open,
        "describe_s": t_describe,
        "example_s": t_example,
        "aggregate_s": t_agg,
        "aggregate_MBps": maps / 1e6 / t_agg,
        "objects": objects,
        "MB": nbytes / 1e6,
    }


def main(argv: list[str] | None = None) -> None:
    """Print how the store's costs grow with the number of examples (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m jobs.bench_scale", description=main.__doc__)
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated store sizes in examples")
    parser.add_argument("--part-size", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="vz-scale-", dir=os.environ.get("TMPDIR")) as tmp:
        rows = [measure(n, args.part_size, args.layers, Path(tmp)) for n in sizes]
    cols = ["open_s", "describe_s", "example_s", "aggregate_s", "objects", "MB"]
    print(f"# synthetic stores: parts of {args.part_size} examples, {args.layers} layers, one method, 8-24 tokens")
    print("examples | parts | " + " | ".join(cols) + " | aggregate MB/s")
    for r in rows:
        cells = " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols)
        print(f"{r['examples']} | {r['parts']} | {cells} | {r['aggregate_MBps']:.1f}")
    first, last = rows[0], rows[-1]
    scale = last["examples"] / first["examples"]
    print(f"# growth from {first['examples']} to {last['examples']} examples ({scale:g}x the data):")
    for c in cols:
        grown = last[c] / first[c] if first[c] else float("nan")
        line = f"  {c:12s} x{grown:.1f}"
        if c in ("aggregate_s", "objects", "MB"):  # totals: linear in the data at best
            line += f"   linear extrapolation to 10^6 examples: {last[c] * 1e6 / last['examples']:.3g}"
        print(line)


if __name__ == "__main__":
    main()
