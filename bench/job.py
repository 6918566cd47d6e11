"""Benchmark the scoring job against in-process `vzcore.score` on the same examples and threads.

    python -m bench.job                       # MiniLM, 384 chatterbot lines cut at 64 tokens, parts of 32
    python -m bench.job --actors 1,2 --no-compare-writes   # only the actors, writing in the background
    python -m bench.job --limit 160 --part-size 16 --methods value_zeroing
    python -m bench.job --memory-examples 8838   # then twice through the corpus, no token limit
    python -m bench.job --repeats 0 --memory-examples 13257   # only that: three times through
    python -m bench.job --device cuda --limit 4400 --part-size 250 --batch-size 32 --max-length 128 --repeats 1
    python -m bench.job --quick                    # a small run of every code path (the tests run it)

Prints, from one run: steady-state throughput (after the first part) of in-process scoring and of
the job in this process (`--actors 0`), with 1 and with 2 actors per device (on CPUs: sharing the
threads), each with its parts written behind the next part's scoring (the default) and, to compare,
in turn; the job's fixed start-up cost, store bytes per example against raw float16
`[layers, n, n]` bytes, and an actor's peak memory part after part (with `--memory-examples`, over
a long job as well).
"""

from __future__ import annotations

import os
import tempfile
import time

import typer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _in_process(
    model: str,
    threads: int,
    texts: list[str],
    methods: list[str],
    part_size: int,
    batch_size: int,
    max_length: int,
    passes: int,
    device: str = "cpu",
) -> list[list[float]]:
    """Score part by part as an actor would (sorted by length), without Ray or a store; return part seconds.

    Runs in a child process (see `bench`) so that this driver never holds torch threads of its own:
    they competed with a 2-thread actor on this 2-core machine and slowed it down 4-fold.
    """
    import warnings

    import torch

    import vzcore

    warnings.filterwarnings("ignore", message=".*were truncated")  # expected: the corpus has long lines
    torch.set_num_threads(threads)
    handle = vzcore.load_model(model, device=device)
    if handle.device.type == "cpu":
        vzcore.keep_freed_memory()  # as the job's workers do
    out = []
    for _ in range(passes):
        seconds = []
        for a in range(0, len(texts), part_size):
            part = sorted((t for t in texts[a : a + part_size] if t.strip()), key=len)  # as the actors batch
            t0 = time.perf_counter()
            for b in range(0, len(part), batch_size):
                batch = part[b : b + batch_size]  # one forward pass per batch, as an actor scores it
                vzcore.score(handle, batch, methods=methods, max_length=max_length, batch_size=len(batch))
            seconds.append(time.perf_counter() - t0)
        out.append(seconds)
    return out


def _job(
    out: str,
    model: str,
    methods: list[str],
    limit: int,
    part_size: int,
    batch_size: int,
    actors: int,
    max_length: int | None,
    dataset: str | None = None,
    device: str = "cpu",
    background_writes: bool = True,
):
    from jobs.score import run_job
    from jobs.score.config import JobConfig

    arrivals: list[tuple[float, object]] = []
    cfg = JobConfig(
        out=out,
        dataset=dataset,
        model=model,
        methods=tuple(methods),
        limit=limit,
        max_length=max_length,
        part_size=part_size,
        batch_size=batch_size,
        actors=actors,
        device=device,
        gpus_per_actor=1 / max(actors, 1),  # on cuda: the actors share the one GPU
        progress=False,
        background_writes=background_writes,
    )
    import jobs.score.driver as score_mod

    t0 = time.perf_counter()
    real_score = score_mod.score_parts
    scoring: list[float] = []  # when the driver entered and left the scoring step

    def record(cfg_, executor, *args, **kwargs):  # note when each part's report arrives
        real_run = executor.run

        def run(units, step, *, on_result=None, **kw):
            def arrived(unit, report):
                arrivals.append((time.perf_counter(), report))
                on_result(unit, report)

            return real_run(units, step, on_result=arrived, **kw)

        executor.run = run
        scoring.append(time.perf_counter())
        try:
            return real_score(cfg_, executor, *args, **kwargs)
        finally:
            scoring.append(time.perf_counter())

    score_mod.score_parts = record
    try:
        summary = run_job(cfg)
    finally:
        score_mod.score_parts = real_score
    end = time.perf_counter()
    # Driver time before scoring (plan, checks) and after it (tables, store size).
    return summary, arrivals, end - t0, (scoring[0] - t0, end - scoring[1])


def _job_here(threads: int, *args, **kwargs):
    """Run `_job` with `--actors 0` in this (child) process on `threads` torch threads."""
    import warnings

    import torch

    warnings.filterwarnings("ignore", message=".*were truncated")
    torch.set_num_threads(threads)
    return _job(*args, **kwargs)


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"


def _store_sizes(out: str, methods: list[str]):
    import zarr

    from vzcore.store.layout import packed_size, part_path
    from vzcore.store.root import read_plan

    root = zarr.open_group(out, mode="r")
    layers, causal = len(root.attrs["layers"]), root.attrs["causal"]
    stored = raw = packed = examples = 0
    for p in read_plan(root):
        g = root[part_path(p["part"])]
        n = g["length"][:]
        examples += int((n > 0).sum())
        raw += int(sum(layers * int(k) * int(k) * 2 for k in n)) * len(methods)
        packed += int(sum(packed_size(int(k), int(k), layers, causal) * 2 for k in n)) * len(methods)
        for m in methods:
            stored += g[f"scores/{m}"].nbytes_stored()
    return stored / examples, raw / examples, packed / examples


def bench(
    limit: int = typer.Option(384, help="examples (chatterbot lines; from line 224 on they get long)"),
    max_length: int = typer.Option(64, help="token limit (the same for every configuration)"),
    part_size: int = typer.Option(32),
    batch_size: int = typer.Option(8),
    methods: str = typer.Option("value_zeroing,attention"),
    model: str = typer.Option("minilm"),
    threads: int = typer.Option(2, help="total threads: in-process, and shared among the actors (CPU)"),
    device: str = typer.Option("cpu", help="cpu, or cuda: in-process on the GPU against actors sharing it"),
    repeats: int = typer.Option(2, help="interleaved repeats of every configuration (0: only --memory-examples)"),
    actors: str = typer.Option("0,1,2", help="the job's configurations: actors per device (0: in this process)"),
    compare_writes: bool = typer.Option(True, help="also run each configuration with its writes in turn"),
    memory_examples: int = typer.Option(
        0, help="then score this many lines (cycling the corpus) on 1 actor, no token limit; print its peak RSS"
    ),
    quick: bool = typer.Option(False, help="a small run of every code path (the test suite runs it)"),
) -> None:
    """Print the job's throughput, start-up cost, store size and actor memory against in-process scoring."""
    if quick:  # six parts: a steady-state window for two actors
        limit, max_length, part_size, batch_size, repeats, memory_examples = 48, 16, 8, 4, 1, min(memory_examples, 16)
    from jobs.score.data import chatterbot_lines

    meths = [m for m in methods.split(",") if m]
    texts = chatterbot_lines()[:limit]
    print(
        f"# {limit} chatterbot lines, {model}, max length {max_length}, methods {meths}, parts of {part_size}, "
        f"batch {batch_size}, "
        + (
            f"{threads} threads in all, {os.cpu_count()} CPUs"
            if device == "cpu"
            else f"on {_gpu_name()}, 1 CPU thread per replica as a GPU actor of 1 CPU has"
        )
    )
    import warnings

    warnings.filterwarnings("ignore", message=".*were truncated")  # expected: the corpus has long lines

    import multiprocessing as mp

    n_steady = sum(1 for t in texts[part_size:] if t.strip())
    counts = [int(a) for a in actors.split(",") if a.strip()]
    jobs = [(a, bg) for a in counts for bg in ((True, False) if compare_writes else (True,))]
    rates: dict[str, list[float]] = {"in-process": [], **{_name(a, bg): [] for a, bg in jobs}}
    store_line = memory_line = ""
    for rep in range(repeats):  # interleaved: this machine's speed drifts a lot from minute to minute
        with mp.get_context("spawn").Pool(1) as pool:
            args = (
                model,
                threads if device == "cpu" else 1,
                texts,
                meths,
                part_size,
                batch_size,
                max_length,
                1,
                device,
            )
            secs = pool.apply(_in_process, args)[0]
        rates["in-process"].append(n_steady / sum(secs[1:]))
        print(f"[{rep}] in-process: {rates['in-process'][-1]:.2f} examples/s steady (first part {secs[0]:.1f} s)")
        for n_actors, bg in jobs:
            with tempfile.TemporaryDirectory(prefix="vzbench") as tmp:
                out = f"{tmp}/b.zarr"
                args = (out, model, meths, limit, part_size, batch_size, n_actors, max_length)
                kwargs = dict(device=device, background_writes=bg)
                if n_actors == 0:  # in a child too: this driver's torch threads would compete with later actors
                    with mp.get_context("spawn").Pool(1) as pool:
                        summary, arrivals, total, (before, after) = pool.apply(_job_here, (threads, *args), kwargs)
                else:
                    summary, arrivals, total, (before, after) = _job(*args, **kwargs)
                arrivals.sort(key=lambda a: a[0])
                # Steady state: from the moment every worker has finished one part to the moment the
                # first one runs out of parts (after it, the last parts drain with workers idle).
                workers = max(n_actors, 1)
                t_k = arrivals[workers - 1][0]
                later = [r for _, r in arrivals[workers : len(arrivals) - workers + 1]]
                window = arrivals[-workers][0] - t_k
                rate = sum(r.scored for r in later) / window
                rates[_name(n_actors, bg)].append(rate)
                busy = sum(r.seconds for r in later) / workers  # time scoring and writing, per worker
                writes = sum(r.write_seconds for r in later) / workers
                first = sum(r.seconds for _, r in arrivals[:workers]) / workers
                fixed = total - (arrivals[-1][0] - t_k) - first
                print(
                    f"[{rep}] {_name(n_actors, bg)}: {rate:.2f} examples/s steady; window {window:.1f} s, "
                    f"each worker scoring and writing {busy:.1f} s of it (writing {writes:.2f} s); fixed start-up "
                    f"{fixed:.1f} s of {total:.1f} s wall (driver before scoring {before:.1f} s, after {after:.1f} s; "
                    f"first worker ready {summary.startup_seconds:.1f} s after scoring began)"
                )
                if n_actors == min(a for a in counts if a) and bg and rep == 0 and not store_line:
                    per_ex, raw, packed = _store_sizes(out, meths)
                    store_line = (
                        f"store: {per_ex / 1024:.2f} KiB per example for {len(meths)} method(s), compressed "
                        f"(raw float16 [layers,n,n]: {raw / 1024:.2f} KiB, so {per_ex / raw * 100:.0f} %; packed "
                        f"before compression {packed / 1024:.2f} KiB); whole store "
                        f"{summary.store_bytes / 2**20:.2f} MiB with tables"
                    )
                    peaks = " ".join(f"{r.peak_rss_mib:.0f}" for _, r in arrivals)
                    memory_line = f"actor peak RSS (MiB) after each of {len(arrivals)} parts: {peaks}"
    if repeats:  # 0: only the memory run
        _summary(rates, jobs)
        print(store_line or "store: (no run on actors)")
        print(memory_line or "actor peak RSS: (no run on actors)")
    if memory_examples:
        _memory_run(model, meths, memory_examples, part_size, batch_size)


def _name(actors: int, background: bool) -> str:
    where = "job here" if actors == 0 else f"job {actors} actor" + ("s" if actors > 1 else "")
    return where + ("" if background else ", writes in turn")


def _summary(rates: dict[str, list[float]], jobs: list[tuple[int, bool]]) -> None:
    """Print each configuration's best and median rate, its time against in-process, and what the
    background writer saves against writing in turn (ratios of runs interleaved in this one run)."""
    import statistics

    print("# summary (best of the repeats, then median)")
    best_base, median_base = max(rates["in-process"]), statistics.median(rates["in-process"])
    for name, vals in rates.items():
        extra = ""
        if name != "in-process":
            extra = (
                f"; job time vs in-process: {(best_base / max(vals) - 1) * 100:+.1f} % (best), "
                f"{(median_base / statistics.median(vals) - 1) * 100:+.1f} % (median)"
            )
        print(f"{name:32s} {max(vals):7.2f} / {statistics.median(vals):7.2f} examples/s{extra}")
    for a, bg in jobs:
        inline = rates.get(_name(a, False))
        if bg and inline:
            gain = statistics.median(rates[_name(a, True)]) / statistics.median(inline)
            print(f"background writer, {_name(a, True)}: {gain:.2f}x the rate of writing in turn (median)")


def _memory_run(model: str, methods: list[str], examples: int, part_size: int, batch_size: int) -> None:
    """Show that an actor's peak memory plateaus: its RSS after parts spread over a long job."""
    import json
    import math

    from jobs.score.data import chatterbot_lines

    lines = chatterbot_lines()
    with tempfile.TemporaryDirectory(prefix="vzbench") as tmp:
        data = f"{tmp}/lines.jsonl"
        with open(data, "w") as f:
            for i in range(examples):
                f.write(json.dumps({"text": lines[i % len(lines)]}) + "\n")
        t0 = time.perf_counter()
        summary, arrivals, _, _ = _job(
            f"{tmp}/m.zarr", model, methods, examples, part_size, batch_size, 1, None, dataset=data
        )
        arrivals.sort(key=lambda a: a[0])
        peaks = [r.peak_rss_mib for _, r in arrivals]
        marks = sorted({round(k * (len(peaks) - 1) / 10) for k in range(11)})
        # The part holding the last line of each pass through the corpus, and the last part.
        ends = [math.ceil(k * len(lines) / part_size) for k in range(1, math.ceil(examples / len(lines)))]
        per_pass = [peaks[min(e, len(peaks)) - 1] for e in [*ends, len(peaks)]]
        print(
            f"memory run: {summary.scored} examples ({summary.tokens} tokens, longest lines untruncated) in "
            f"{len(peaks)} parts, {time.perf_counter() - t0:.0f} s; actor peak RSS (MiB) after part "
            + ", ".join(f"{k + 1}: {peaks[k]:.0f}" for k in marks)
            + f"; after each pass through the corpus: {', '.join(f'{p:.0f}' for p in per_pass)}"
        )


if __name__ == "__main__":
    typer.run(bench)
