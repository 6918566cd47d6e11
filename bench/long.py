"""Long texts: time and peak memory of value zeroing as the text grows, each length in a fresh process.

    python -m bench.long --model smollm2 --lengths 512,1024,2048 --layers 0
    python -m bench.long --model smollm2 --lengths 512,1024,2048 --layers all --rows last   # memory of every layer
    python -m bench.long --lengths 64 --sources 128 --runs 3   # also: decoders' visible sources only, vs all
    python -m bench.long --quick   # a small run of every code path

Prints, per length `n`: the wall and CPU seconds of scoring one text (value zeroing, the chosen
layers), the CPU seconds per layer and their extrapolation to every layer, the peak resident
memory above the loaded model, and what the `n²`-sized tensors take (the captured attention
weights and the maps) beside the pair budget that bounds each chunk of pairs; then the growth
exponent of time and memory between consecutive lengths (2: quadratic). Long lengths limit the
layers (`--layers`), since one layer's cost does not depend on which layer it is; `--rows last`
scores every chosen layer's last row only (`n` pairs a layer, not `n²`), which keeps the clean pass,
the captures and the `[layers, n, n]` maps of every layer (their memory) at a fraction of the time.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing as mp
import threading
import time

import torch

import vzcore
from bench.core import PASSAGE
from vzcore.api import default_memory_budget
from vzcore.scoring import group_bytes_per_layer, layer_groups

__all__ = ["main", "measure"]


def long_ids(handle, n: int) -> list[int]:
    """Return exactly `n` token ids of the benchmark passage repeated as often as needed."""
    ids: list[int] = []
    while len(ids) < n:
        ids += handle.tokenizer(PASSAGE)["input_ids"]
    return ids[:n]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _worker(model: str, n: int, layers: list[int] | None, threads: int, rows: str, queue) -> None:
    torch.set_num_threads(threads)
    handle = vzcore.load_model(model)
    vzcore.keep_freed_memory()
    ids = long_ids(handle, n)
    targets = [-1] if rows == "last" else None
    # one-time set-up (kernels' buffers) is not the text's memory
    vzcore.score(handle, [ids[:8]], layers=layers, targets=targets)
    base, peak, done = _rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    wall, cpu = time.perf_counter(), time.process_time()
    vzcore.score(handle, [ids], layers=layers, targets=targets)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done.set()
    sampler.join()
    geo = handle.geometry
    queue.put(dict(wall=wall, cpu=cpu, peak=max(peak[0], _rss()) - base, heads=geo.heads, layers=geo.num_layers))


def measure(model: str, n: int, layers: list[int] | None, threads: int, rows: str = "all") -> dict:
    """Score one `n`-token text in a fresh process (so no earlier run's freed memory hides the peak)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(model, n, layers, threads, rows, queue))
    proc.start()
    got = queue.get(timeout=24 * 3600)
    proc.join()
    return got


def source_saving(model: str, n: int, runs: int, threads: int) -> None:
    """Print the CPU time of one `n`-token text with every chunk computing all `n` sources (as before
    `visible_pair_chunks`) against the visible ones only, interleaved in this process."""
    import statistics

    import vzcore.methods.value_zeroing as vz
    from vzcore.ops.pairs import pair_chunks, visible_pair_chunks

    torch.set_num_threads(threads)
    handle = vzcore.load_model(model)
    vzcore.keep_freed_memory()
    ids = long_ids(handle, n)

    def every_source(reach, bytes_per_pair, budget):
        b, t = reach.shape
        return [(k, r, slice(0, n)) for k, r in pair_chunks(b, t, n, bytes_per_pair, budget)]

    times: dict[str, list[float]] = {"all": [], "visible": []}
    chunkers = [("all", every_source), ("visible", visible_pair_chunks)]
    try:
        for k in range(runs + 1):  # the first round warms up
            for name, chunker in chunkers if k % 2 == 0 else chunkers[::-1]:
                vz.visible_pair_chunks = chunker
                start = time.process_time()
                vzcore.score(handle, [ids])
                if k:
                    times[name].append(time.process_time() - start)
    finally:
        vz.visible_pair_chunks = visible_pair_chunks
    every, visible = statistics.median(times["all"]), statistics.median(times["visible"])
    print(f"n={n}: all sources per chunk {every:.2f} CPU-s, visible only {visible:.2f}: {every / visible:.2f}x faster")


def main(argv: list[str] | None = None) -> None:
    """Time and peak memory of value zeroing on one long text per length (prints a table)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.long", description=main.__doc__)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--lengths", default="512,1024,2048", help="comma-separated text lengths in tokens")
    parser.add_argument("--layers", default="0", help="comma-separated blocks to score (all: every block)")
    parser.add_argument("--rows", choices=("all", "last"), default="all", help="target rows scored per layer")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the scoring process")
    parser.add_argument("--sources", type=int, default=0, help="also: all sources vs visible ones at this n")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs of the --sources comparison")
    parser.add_argument("--quick", action="store_true", help="a small run of every code path")
    args = parser.parse_args(argv)
    if args.quick:
        args.lengths, args.layers, args.sources, args.runs = "32,64", "0", 16, 1
    lengths = [int(x) for x in args.lengths.split(",")]
    budget = default_memory_budget("cpu")
    print(
        f"model {args.model}, value zeroing ({args.rows} rows), CPU, {args.threads} thread(s), "
        f"pair budget {budget / 2**20:.0f} MiB"
    )
    print(
        "n | layers | wall s | CPU s | CPU s/layer | CPU s, all layers (extrapolated) | "
        "peak MiB above model | attention MiB (all layers) | captured at once MiB | maps MiB"
    )
    rows = []
    for n in lengths:
        chosen = None if args.layers == "all" else [int(x) for x in args.layers.split(",")]
        got = measure(args.model, n, chosen, args.threads, args.rows)
        count = got["layers"] if chosen is None else len(chosen)
        per_layer = got["cpu"] / count
        attn = count * got["heads"] * n * n * 4  # float32 attention weights of every scored layer
        # the layers scored as one group (vzcore.scoring): what is captured at any moment
        group = len(layer_groups(range(count), group_bytes_per_layer(1, n, got["heads"], 1), budget)[0])
        maps = count * n * n * 4  # the float32 maps handed back
        rows.append((n, per_layer, got["peak"]))
        print(
            f"{n} | {count} | {got['wall']:.1f} | {got['cpu']:.1f} | {per_layer:.2f} | "
            f"{per_layer * got['layers']:.0f} | {got['peak'] / 2**20:.0f} | {attn / 2**20:.0f} | "
            f"{group * got['heads'] * n * n * 4 / 2**20:.0f} | {maps / 2**20:.0f}"
        )
    for (n0, t0, m0), (n1, t1, m1) in itertools.pairwise(rows):
        grow = math.log(n1 / n0)
        mem = math.log(m1 / m0) / grow if m0 > 0 and m1 > 0 else float("nan")
        print(f"growth {n0} -> {n1}: time ~ n^{math.log(t1 / t0) / grow:.2f}, peak memory ~ n^{mem:.2f}")
    if args.sources:
        source_saving(args.model, args.sources, args.runs, args.threads)


if __name__ == "__main__":
    main()
