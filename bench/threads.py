"""Benchmark one replica's torch threads: the same texts scored with 1 and with 2 (or `--threads`)
threads, each try in a fresh process, alternating, so that drift hits both alike.

    python -m bench.threads                  # MiniLM, 48 chatterbot lines cut at 24 tokens, 3 repeats
    python -m bench.threads --threads 1,2,4 --repeats 5
    python -m bench.threads --quick          # a small run of every code path (the test suite runs it)

Prints examples/s per try, then the median per thread count and its ratio to one thread. This is
what sets the CPU default of `vz score` (one single-threaded actor per core): on a loaded machine
a replica's threads wait for each other whenever another process holds a core.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time

import typer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _rate(model: str, threads: int, limit: int, max_length: int, batch_size: int) -> float:
    """Load `model` on `threads` torch threads in this (fresh) process; return examples/s over `limit` lines."""
    import warnings

    import torch

    import vzcore
    from jobs.score.data import chatterbot_lines

    warnings.filterwarnings("ignore", message=".*were truncated")
    torch.set_num_threads(threads)
    handle = vzcore.load_model(model, device="cpu")
    vzcore.keep_freed_memory()  # as the job's workers do
    texts = sorted((t for t in chatterbot_lines()[:limit] if t.strip()), key=len)  # batched by length, as a part
    methods = ["value_zeroing", "attention"]
    vzcore.score(handle, texts[:batch_size], methods=methods, max_length=max_length)  # warm up
    t0 = time.perf_counter()
    for b in range(0, len(texts), batch_size):
        vzcore.score(handle, texts[b : b + batch_size], methods=methods, max_length=max_length, batch_size=batch_size)
    return len(texts) / (time.perf_counter() - t0)


def bench(
    model: str = typer.Option("minilm"),
    threads: str = typer.Option("1,2", help="thread counts to compare (the first is the baseline)"),
    limit: int = typer.Option(48, help="chatterbot lines per try"),
    max_length: int = typer.Option(24),
    batch_size: int = typer.Option(8),
    repeats: int = typer.Option(3),
    quick: bool = typer.Option(False, help="a small run of every code path (the test suite runs it)"),
) -> None:
    """Print examples/s of one replica with each thread count, from one run (ratios to the first)."""
    if quick:
        limit, max_length, repeats = 8, 8, 1
    counts = [int(t) for t in threads.split(",") if t.strip()]
    print(f"# {model}, {limit} chatterbot lines cut at {max_length} tokens, batch {batch_size}, {os.cpu_count()} CPUs")
    rates: dict[int, list[float]] = {n: [] for n in counts}
    ctx = mp.get_context("spawn")
    for rep in range(repeats):
        for n in counts if rep % 2 == 0 else counts[::-1]:
            with ctx.Pool(1) as pool:
                rates[n].append(pool.apply(_rate, (model, n, limit, max_length, batch_size)))
            print(f"[{rep}] {n} thread(s): {rates[n][-1]:.2f} examples/s", flush=True)
    base = statistics.median(rates[counts[0]])
    print("# summary (median)")
    for n in counts:
        med = statistics.median(rates[n])
        print(f"{n} thread(s): {med:.2f} examples/s, {med / base:.2f}x {counts[0]} thread(s)")


if __name__ == "__main__":
    typer.run(bench)
