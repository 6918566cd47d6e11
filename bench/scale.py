"""How a store's costs grow with its size, locally and on a local S3 server: times, objects, requests.

    python -m bench.scale                              # 10^3, 10^4, 10^5 examples; local and S3 (if moto)
    python -m bench.scale --sizes 1000,10000 --part-size 32 --backends local
    python -m bench.scale --quick --backends local   # a small run of every code path

For each size, one synthetic store is built locally with the store's own writers (random but valid
maps: one method, `--layers` layers, 8 to 24 tokens) and measured where it lies; then, for the S3
backend, it is uploaded as it is to a moto server started for the run (on loopback, ended by its
pid) and measured there. Per store: seconds to `open_store`, `describe()`, read one example,
iterate one part (`part_reader(k).iter_results`), aggregate (in this process, no plots; with its
throughput in MB of stored maps per second) and rewrite one part with new maps (`write_part`),
and the store's objects and bytes. On S3 each of these also has its HTTP request count, taken
from the server's log (`bench.s3_counts`), with the counts by kind listed under the table. Each
table ends with every figure's growth from the smallest to the largest store and, for those that
grow, the linear extrapolation to 10^6 examples.

Only public entry points are used (`vzcore.open_store`, `Store.describe/example/done_parts/
part_of/part_reader`, `jobs.aggregate.aggregate`, `write_random_store`, `write_part`), so the
benchmark reads whatever layout the store has.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

METHODS = ("value_zeroing",)
LENGTHS = (8, 24)
STEPS = ("open", "describe", "example", "part", "aggregate", "write")


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _local_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _rewrite_part(path: str, storage_options: dict, store, part: int, seed: int) -> None:
    """Write part `part` again with new random maps (new lengths, so the part is rewritten in full)."""
    import numpy as np

    from tests.harness.synthetic_store import random_maps
    from vzcore.store.location import Location
    from vzcore.store.writer import ExampleOutcome, write_part

    info = next(p for p in store.parts if p.part == part)
    rng = np.random.default_rng(seed)
    layers = len(store.layers)
    outcomes = []
    for i in range(info.start, info.stop):
        n = int(rng.integers(LENGTHS[0], LENGTHS[1] + 1))
        ids = [0, *rng.integers(10, 1000, n - 2).tolist(), 1]
        outcomes.append(
            ExampleOutcome(
                i,
                tokens=["[CLS]", *(f"w{t}" for t in ids[1:-1]), "[SEP]"],
                token_ids=ids,
                word_ids=[None, *range(n - 2), None],
                scores={m: random_maps(rng, layers, n, store.causal) for m in store.methods},
            )
        )
    write_part(
        Location(path, storage_options),
        part,
        outcomes,
        store.methods,
        causal=store.causal,
        num_maps=layers,
        start=info.start,
        stop=info.stop,
    )


def measure(path: str, storage_options: dict, size: int, out: Path, counting: Callable | None, seed: int) -> dict:
    """Time (and, given `counting`, count the requests of) each step on the store at `path`.

    The part rewritten last gets maps drawn with `seed`: a seed the part was not written with, so
    that its lengths differ and `write_part` rewrites it in full (as a fresh part is written).
    """
    import vzcore
    from jobs.aggregate import AggregateConfig, aggregate

    row: dict = {"examples": size}

    def step(name: str, fn):
        with counting() if counting else nullcontext(None) as counts:
            seconds, value = _timed(fn)
        row[f"{name}_s"] = seconds
        if counts is not None:
            row[f"{name}_req"] = counts
        return value

    store = step("open", lambda: vzcore.open_store(path, storage_options=storage_options))
    step("describe", store.describe)
    eid = size // 2
    step("example", lambda: store.example(eid))
    part = store.done_parts()[0]
    fresh = vzcore.open_store(path, storage_options=storage_options)  # nothing of any part read yet
    step("part", lambda: sum(len(block) for block in fresh.part_reader(part).iter_results(fresh.methods)))
    config = AggregateConfig(plots=False)
    summary = step(
        "aggregate",
        lambda: aggregate(path, out, config=config, storage_options=storage_options, log=lambda *a: None),
    )
    row["parts"] = len(store.parts)
    row["aggregated_parts"] = len(summary["parts_used"])
    step("write", lambda: _rewrite_part(path, storage_options, store, part, seed))
    return row


def _maps_bytes(names_sizes: list[tuple[str, int]]) -> int:
    """Bytes of stored maps: the chunks under `scores/` (an estimate of what the aggregator decodes)."""
    return sum(n for name, n in names_sizes if "/scores/" in name and "zarr.json" not in name)


def bench_local(size: int, args, folder: Path) -> tuple[dict, Path]:
    """Build the store of `size` examples in `folder` and measure it there."""
    from tests.harness.synthetic_store import write_random_store

    path = folder / f"s{size}.zarr"
    build, _ = _timed(
        lambda: write_random_store(
            path, size, methods=METHODS, num_layers=args.layers, part_size=args.part_size, lengths=LENGTHS
        )
    )
    files = [(str(p.relative_to(folder)), p.stat().st_size) for p in path.rglob("*") if p.is_file()]
    row = measure(str(path), {}, size, folder / f"agg-local-{size}", None, seed=1)
    row.update(build_s=build, objects=len(files), MB=sum(n for _, n in files) / 1e6, maps_MB=_maps_bytes(files) / 1e6)
    return row, path


def bench_s3(size: int, local: Path, s3, folder: Path) -> dict:
    """Upload the local store `local` to the server `s3` as it is, and measure it there."""
    url = s3.url(local.name)
    fs = s3.filesystem()
    upload, _ = _timed(lambda: fs.put(str(local), url, recursive=True))
    found = fs.find(url, detail=True)
    files = [(name, int(d["size"])) for name, d in found.items()]
    row = measure(url, s3.storage_options, size, folder / f"agg-s3-{size}", s3.counting, seed=2)
    row.update(build_s=upload, objects=len(files), MB=sum(n for _, n in files) / 1e6, maps_MB=_maps_bytes(files) / 1e6)
    fs.rm(url, recursive=True)  # the server holds objects in memory
    return row


def _cell(value) -> str:
    if isinstance(value, Counter):
        return str(sum(value.values()))
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _number(value) -> float:
    return float(sum(value.values())) if isinstance(value, Counter) else float(value)


def print_table(backend: str, rows: list[dict], args) -> None:
    """Print one backend's rows, the requests by kind (S3), the growth and the 10^6 extrapolation."""
    counted = "open_req" in rows[0]
    cols = [f"{s}_s" for s in STEPS] + ([f"{s}_req" for s in STEPS] if counted else []) + ["objects", "MB"]
    built = "build_s = upload of the local store" if backend == "s3" else "build_s = write_random_store"
    print(
        f"# {backend}: synthetic stores of random maps, parts of {args.part_size} examples, {args.layers} layers, "
        f"one method ({METHODS[0]}), {LENGTHS[0]}-{LENGTHS[1]} tokens; {built}"
    )
    if counted:
        print("# *_req: HTTP requests the S3 server served for the step (write = rewrite one part in full)")
    print(
        "examples | parts | build_s | "
        + " | ".join(cols)
        + " | aggregate MB/s"
        + (" | agg req/part" if counted else "")
    )
    for r in rows:
        line = f"{r['examples']} | {r['parts']} | {r['build_s']:.1f} | " + " | ".join(_cell(r[c]) for c in cols)
        line += f" | {r['maps_MB'] / r['aggregate_s']:.2f}"
        if counted:
            line += f" | {_number(r['aggregate_req']) / r['aggregated_parts']:.1f}"
        print(line)
    if counted:
        print("# requests by kind:")
        for r in rows:
            kinds = "; ".join(f"{s} " + " ".join(f"{k} {n}" for k, n in sorted(r[f"{s}_req"].items())) for s in STEPS)
            print(f"  {r['examples']}: {kinds}")
    first, last = rows[0], rows[-1]
    if len(rows) < 2:
        return
    scale = last["examples"] / first["examples"]
    print(f"# growth from {first['examples']} to {last['examples']} examples ({scale:g}x the data):")
    for c in cols:
        a, b = _number(first[c]), _number(last[c])
        if not a and not b:
            print(f"  {c:13s} 0 at every size")
            continue
        grown = b / a if a else float("inf")
        line = f"  {c:13s} x{grown:.1f}"
        if grown > max(2.0, scale**0.5):  # grows with the store: at best linearly
            line += f"   linear extrapolation to 10^6 examples: {b * 1e6 / last['examples']:.3g}"
        print(line)


def main(argv: list[str] | None = None) -> None:
    """Print how the store's costs grow with the number of examples (see the module docstring)."""
    from bench.s3_counts import have_moto, local_s3

    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=main.__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated store sizes in examples")
    parser.add_argument(
        "--part-size",
        type=int,
        default=1000,
        help="examples per part (1000: the 10^5 stores build and aggregate in minutes)",
    )
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument(
        "--backends", default=None, help="comma-separated: local, s3 (default: both, s3 only where moto is installed)"
    )
    parser.add_argument("--quick", action="store_true", help="a small run of every code path (the test suite runs it)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.part_size = "16,64", 8
    sizes = [int(x) for x in args.sizes.split(",")]
    backends = args.backends.split(",") if args.backends else ["local", "s3"] if have_moto() else ["local"]
    if "s3" in backends and not have_moto():
        parser.error("the s3 backend needs moto (moto_server beside this python) and s3fs")
    if not args.backends and "s3" not in backends:
        print("# no moto_server beside this python: local only")
    rows: dict[str, list[dict]] = {b: [] for b in backends}
    with tempfile.TemporaryDirectory(prefix="vz-scale-", dir=os.environ.get("TMPDIR")) as tmp:
        folder = Path(tmp)
        with local_s3() if "s3" in backends else nullcontext() as s3:
            for size in sizes:
                row, path = bench_local(size, args, folder)
                if "local" in backends:
                    rows["local"].append(row)
                if s3 is not None:
                    rows["s3"].append(bench_s3(size, path, s3, folder))
                shutil.rmtree(path)
    for backend in backends:
        print_table(backend, rows[backend], args)


if __name__ == "__main__":
    main()
