"""Benchmark the fast value-zeroing path against the one-call-per-token reference.

    python -m bench.core --model minilm --lengths 16,32,64,128 --runs 5
    python -m bench.core --device cuda
    python -m bench.core --costs-only --cost-length 64 --runs 3   # the per-method table alone
    python -m bench.core --families --costs-only --no-costs --lengths 32   # the per-family table alone
    python -m bench.core --quick   # a small run of every code path (the test suite runs it)

Prints, per sentence length, seconds per sentence of both (median and min–max over interleaved
runs), their ratio, the fast path's useful FLOP rate (the irreducible down projection,
`2 · pairs · d · d_ff` per layer, over its whole wall time) against the matmul rate at that shape
measured in the same run, the peak memory above the loaded model, and the error and speed of
each lower-precision option against float32. Then a per-method table: each registered method's
seconds per sentence alone, relative to value zeroing's, on full maps (methods that need targets
get every row as a target) and on one target row, and the cost of all methods in one call.
With `--families`: for every registered family, a seeded model of its first model type (2 layers,
hidden 64), the exact path its blocks take, the reference's and the fast path's seconds per
sentence, their ratio and the largest difference of their maps.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

import vzcore
from vzcore.loading import ModelHandle
from vzcore.maps import map_entries
from vzcore.reference import reference_value_zeroing

__all__ = ["main", "run_benchmark"]

# Real English text, cut to each benchmark length.
PASSAGE = (
    "Value zeroing measures how much the representation of each token depends on every other token in "
    "its context. For every layer, the value vectors of one context token are set to zero, the layer is "
    "computed again from the same input, and the change of every output is compared with the original "
    "one. Researchers use these scores to study agreement, anaphora and the way information flows "
    "through deep networks. Large corpora are scored once and analysed for weeks, so the computation has "
    "to be exact, fast and reproducible on machines of every size, from a laptop to a cluster of "
    "accelerators. The method was introduced to quantify context mixing in Transformers and compared "
    "with attention weights, attention norms and gradient-based attributions on several tasks, where it "
    "aligned better with linguistic cues and with the predictions of the model itself. "
) * 8


def sentence(handle: ModelHandle, n: int) -> list[int]:
    """Return the token ids of the passage cut to exactly `n` tokens (special tokens included)."""
    ids = handle.tokenizer(PASSAGE, truncation=True, max_length=n)["input_ids"]
    assert len(ids) == n, f"the benchmark passage is shorter than {n} tokens"
    return ids


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def matmul_rate(rows: int, inner: int, cols: int, device: torch.device, dtype=torch.float32, reps: int = 5) -> float:
    """Return the measured matmul rate (FLOP/s) of `[rows, inner] @ [inner, cols]`."""
    a = torch.randn(rows, inner, device=device, dtype=dtype)
    b = torch.randn(inner, cols, device=device, dtype=dtype)
    a @ b
    times = [_timed(lambda: a @ b, device) for _ in range(reps)]
    return 2 * rows * inner * cols / statistics.median(times)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _cpu_peak_worker(model: str, n: int, budget: int | None, queue) -> None:
    torch.set_num_threads(torch.get_num_threads())
    handle = vzcore.load_model(model)
    vzcore.keep_freed_memory()
    ids = sentence(handle, n)
    base, peak, done = _rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    vzcore.score(handle, [ids], memory_budget=budget)
    done.set()
    sampler.join()
    queue.put(max(peak[0], _rss()) - base)


def peak_memory(handle: ModelHandle, model: str, n: int, budget: int | None) -> int:
    """Return the peak memory (bytes) of scoring one `n`-token sentence, above the loaded model."""
    device = handle.device
    if device.type == "cuda":
        ids = sentence(handle, n)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        vzcore.score(handle, [ids], memory_budget=budget)
        return torch.cuda.max_memory_allocated(device) - base
    # A fresh process, so that memory cached by earlier runs does not hide the peak.
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_cpu_peak_worker, args=(model, n, budget, queue))
    proc.start()
    got = queue.get(timeout=600)
    proc.join()
    return got


def down_projection_floor(pairs: int, d_ff: int, d: int, layers: int, device: torch.device):
    """Return a call that runs the fast path's floor: each layer's down projection of every pair,
    `[pairs, d_ff] @ [d_ff, d]`, and nothing else (the matmuls no exact method can skip)."""
    x = torch.randn(pairs, d_ff, device=device)
    w = torch.randn(d, d_ff, device=device)

    def run() -> None:
        for _ in range(layers):
            torch.nn.functional.linear(x, w)

    return run


@dataclass
class Row:
    n: int
    ref: list[float]
    fast: list[float]
    floor: list[float]  # the down projections alone, timed beside each fast run
    useful_rate: float
    matmul_rate: float
    peak: int


def run_benchmark(
    model: str, lengths: list[int], runs: int, device: str | None, budget: int | None, long: int, lines: int = 32
) -> None:
    handle = vzcore.load_model(model, device=device)
    dev = handle.device
    if dev.type == "cpu":
        vzcore.keep_freed_memory()  # this process is ours: tune its allocator as a job's worker does
    geo = handle.geometry
    d, d_ff, layers = geo.hidden, geo.ffn, geo.num_layers
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"model {model} ({handle.family.name}: {layers} layers, d={d}, d_ff={d_ff}) on {name}; float32")
    print("floor: each layer's down projection of every pair alone, timed interleaved with the fast path")
    rows: list[Row] = []
    for n in lengths:
        ids = sentence(handle, n)
        vzcore.score(handle, [ids], memory_budget=budget)  # warm up (and fill the per-block weight cache)
        reference_value_zeroing(handle, ids[: min(n, 8)])
        ref: list[float] = []
        fast: list[float] = []
        floor: list[float] = []
        pairs = map_entries(n, n, handle.family.causal)
        order = [
            (ref, lambda ids=ids: reference_value_zeroing(handle, ids)),
            (fast, lambda ids=ids: vzcore.score(handle, [ids], memory_budget=budget)),
            (floor, down_projection_floor(pairs, d_ff, d, layers, dev)),
        ]
        for k in range(runs):  # interleaved, alternating the order, so machine drift hits all three alike
            for times, fn in order if k % 2 == 0 else order[::-1]:
                times.append(_timed(fn, dev))
        useful = 2 * pairs * d * d_ff * layers / statistics.median(fast)
        rate = matmul_rate(pairs, d_ff, d, dev)
        peak = peak_memory(handle, model, n, budget)
        rows.append(Row(n, ref, fast, floor, useful, rate, peak))
    print()
    header = [
        "n",
        "ref s/sent",
        "ref min–max",
        "fast s/sent",
        "fast min–max",
        "ratio",
        "useful GFLOP/s",
        "matmul GFLOP/s",
        "useful/matmul",
        "floor s",
        "floor/fast",
        "peak MiB",
    ]
    print(" | ".join(header))
    for r in rows:
        mr, mf = statistics.median(r.ref), statistics.median(r.fast)
        cells = [
            f"{r.n}",
            f"{mr:.4f}",
            f"{min(r.ref):.4f}–{max(r.ref):.4f}",
            f"{mf:.4f}",
            f"{min(r.fast):.4f}–{max(r.fast):.4f}",
            f"{mr / mf:.1f}",
            f"{r.useful_rate / 1e9:.1f}",
            f"{r.matmul_rate / 1e9:.1f}",
            f"{r.useful_rate / r.matmul_rate:.0%}",
            f"{statistics.median(r.floor):.4f}",
            f"{statistics.median(r.floor) / mf:.2f}",
            f"{r.peak / 2**20:.1f}",
        ]
        print(" | ".join(cells))
    print()
    ids = sentence(handle, lengths[-1])
    base = vzcore.score(handle, [ids], memory_budget=budget)[0].scores["value_zeroing"]
    precisions = ["bfloat16"] + (["tf32"] if dev.type == "cuda" else [])
    t32 = statistics.median(_timed(lambda: vzcore.score(handle, [ids], memory_budget=budget), dev) for _ in range(3))
    for p in precisions:
        low = vzcore.score(handle, [ids], memory_budget=budget, precision=p)[0].scores["value_zeroing"]
        tp = statistics.median(
            _timed(lambda p=p: vzcore.score(handle, [ids], memory_budget=budget, precision=p), dev) for _ in range(3)
        )
        print(
            f"precision {p:8s} at n={lengths[-1]}: max |error| vs float32 {np.abs(low - base).max():.2e}, "
            f"{t32:.4f} s float32, {tp:.4f} s {p}: speed-up {t32 / tp:.2f}x"
        )
    if lines:
        lines_precision(handle, precisions, max(3, runs), budget, lines)
    batched = [sentence(handle, lengths[-1])] * 32
    vzcore.score(handle, batched, batch_size=32, memory_budget=budget)
    tb = statistics.median(
        _timed(lambda: vzcore.score(handle, batched, batch_size=32, memory_budget=budget), dev) for _ in range(3)
    )
    print(
        f"batch of 32 at n={lengths[-1]}: fast path {tb / 32:.4f} s/sentence "
        f"({statistics.median(rows[-1].ref) / (tb / 32):.0f}x the reference's s/sentence)"
    )
    if long:
        ids = sentence(handle, long)
        t = _timed(lambda: vzcore.score(handle, [ids], memory_budget=budget), dev)
        peak = peak_memory(handle, model, long, budget)
        print(f"n={long}: fast path {t:.2f} s, peak {peak / 2**20:.0f} MiB above the loaded model")


def lines_precision(handle: ModelHandle, precisions: list[str], runs: int, budget: int | None, count: int = 32) -> None:
    """Print each lower precision's CPU time against float32's (interleaved) and its largest score
    change on the first `count` chatterbot-corpus lines: short texts, many chunks, as a corpus job sees."""
    from jobs.score.data import chatterbot_lines

    lines = chatterbot_lines()[:count]
    clock = time.perf_counter if handle.device.type == "cuda" else time.process_time  # CPU time: load-proof
    base = vzcore.score(handle, lines, memory_budget=budget)
    for p in precisions:
        low = vzcore.score(handle, lines, memory_budget=budget, precision=p)
        pairs = zip(base, low, strict=True)
        err = max(np.nanmax(np.abs(a.scores["value_zeroing"] - b.scores["value_zeroing"])) for a, b in pairs)
        times: dict[str, list[float]] = {"float32": [], p: []}
        for k in range(runs):
            for q in ["float32", p] if k % 2 == 0 else [p, "float32"]:
                _sync(handle.device)
                start = clock()
                vzcore.score(handle, lines, memory_budget=budget, precision=q)
                _sync(handle.device)
                times[q].append(clock() - start)
        t32, tp = statistics.median(times["float32"]), statistics.median(times[p])
        print(f"precision {p} on {count} chatterbot lines: {tp / t32:.2f}x float32's time, max |error| {err:.2e}")


# The sizes of the seeded model of each family, where its config has the field (GPT-2's `n_embd` is mapped).
FAMILY_SIZES = dict(
    vocab_size=256,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=128,
    n_inner=128,
    ffn_dim=128,
    rotary_dim=8,
    word_embed_proj_dim=64,
    moe_intermediate_size=64,
    shared_expert_intermediate_size=64,
    num_experts=8,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)


def family_paths(n: int, runs: int) -> None:
    """Print, per registered family, the exact path value zeroing takes and its ratio to the reference."""
    import transformers

    from vzcore.ops.paths import zeroing_path

    print(f"families: a seeded model of each (2 layers, hidden 64), n={n}, CPU float32")
    print(" | ".join(["family", "model type", "path", "ref s/sent", "fast s/sent", "ratio", "max |fast − ref|"]))
    ids = [3 + (7 * k) % 250 for k in range(n)]
    for family, types in vzcore.list_families().items():
        torch.manual_seed(0)
        base = transformers.AutoConfig.for_model(types[0])  # only the fields its config has (a stray one misleads)
        cfg = transformers.AutoConfig.for_model(types[0], **{k: v for k, v in FAMILY_SIZES.items() if hasattr(base, k)})
        model = transformers.AutoModel.from_config(cfg, attn_implementation="eager").eval()
        handle = vzcore.load_model(model)
        if handle.family.audio:  # their rows: `python -m bench.audio_encoders` (inputs are audio, not ids)
            continue
        fast_maps = vzcore.score(handle, [ids])[0].scores["value_zeroing"]  # warm up
        ref_maps = reference_value_zeroing(handle, ids)
        ref = statistics.median(
            _timed(lambda h=handle: reference_value_zeroing(h, ids), handle.device) for _ in range(runs)
        )
        fast = statistics.median(_timed(lambda h=handle: vzcore.score(h, [ids]), handle.device) for _ in range(runs))
        cells = [family, types[0], zeroing_path(handle.family), f"{ref:.4f}", f"{fast:.4f}", f"{ref / fast:.1f}"]
        print(" | ".join([*cells, f"{np.abs(fast_maps - ref_maps).max():.1e}"]))
    print()


def method_costs(handle: ModelHandle, n: int, runs: int, budget: int | None) -> None:
    """Print each applicable method's seconds per sentence of `n` tokens, relative to value zeroing.

    Each method's runs are interleaved with value zeroing's (alternating which goes first) and the
    ratio is taken against the value-zeroing times measured beside it. On a CPU the ratio uses the
    process's CPU time, which other work on a shared machine does not inflate as it does wall time.
    """
    dev = handle.device
    clock = time.perf_counter if dev.type == "cuda" else time.process_time
    ids = sentence(handle, n)
    names = [m for m in vzcore.list_methods() if vzcore.methods.get_method(m).supports(handle.family)]

    def runner(methods: list[str], targets: list[int] | None):
        needy = any(vzcore.methods.get_method(m).needs_targets for m in methods)
        targets = targets if targets is not None else (list(range(n)) if needy else None)
        return lambda: vzcore.score(handle, [ids], methods=methods, targets=targets, memory_budget=budget)

    def timed(fn) -> tuple[float, float]:
        _sync(dev)
        wall, cpu = time.perf_counter(), clock()
        fn()
        _sync(dev)
        return time.perf_counter() - wall, clock() - cpu

    def paired(methods: list[str], targets: list[int] | None) -> tuple[float, float]:
        fn, base = runner(methods, targets), runner(["value_zeroing"], targets)
        base()  # warm up
        first = timed(fn)  # warms up too; a call this slow is timed once (warm-up is noise there)
        mine, theirs = ([first], [timed(base)]) if first[0] > 5.0 else ([], [])
        for k in range(runs if not mine else 0):
            pair = [(mine, fn), (theirs, base)]
            for times, f in pair if k % 2 == 0 else pair[::-1]:
                times.append(timed(f))
        ratio = statistics.median(c for _, c in mine) / statistics.median(c for _, c in theirs)
        return statistics.median(w for w, _ in mine), ratio

    kind = "wall" if dev.type == "cuda" else "CPU"
    print(f"\nper-method cost on {handle.name} at n={n} (median of {runs}, interleaved with value_zeroing;")
    print("full maps: every row, as targets for the methods that need them; calls over 5 s timed once;")
    print(f"s/sent is wall time, × value_zeroing the ratio of {kind} times):")
    print("method | full s/sent | × value_zeroing | one row s/sent | × value_zeroing (one row)")
    plain = [m for m in names if not vzcore.methods.get_method(m).needs_targets]
    for label, methods in [(m, [m]) for m in names] + [(f"all {len(plain)} full-map methods, one call", plain)]:
        full, full_x = paired(methods, None)
        one, one_x = paired(methods, [n // 2])
        print(f"{label} | {full:.4f} | {full_x:.2f} | {one:.4f} | {one_x:.2f}")


def main(argv: list[str] | None = None) -> None:
    """Time the fast value-zeroing path against the reference loop, then every method's cost (prints tables)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.core", description=main.__doc__)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--lengths", default="16,32,64,128", help="comma-separated sentence lengths in tokens")
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs per measurement")
    parser.add_argument("--device", default=None, help="torch device, e.g. cuda")
    parser.add_argument("--memory-budget", type=int, default=None, help="bytes per chunk of pairs")
    parser.add_argument("--long", type=int, default=512, help="one long sentence of this length (0: none)")
    parser.add_argument("--costs-only", action="store_true", help="only the per-method cost table")
    parser.add_argument("--no-costs", action="store_true", help="leave out the per-method cost table")
    parser.add_argument("--cost-length", type=int, default=64, help="sentence length of the cost table")
    parser.add_argument("--families", action="store_true", help="every family's path and its ratio to the reference")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--lines", type=int, default=32, help="chatterbot lines of the precision comparison (0: none)")
    parser.add_argument("--quick", action="store_true", help="a small run of every code path (the test suite runs it)")
    args = parser.parse_args(argv)
    if args.threads:  # on a shared CPU, one thread per process does not stall on a descheduled peer
        torch.set_num_threads(args.threads)
    if args.quick:
        args.lengths, args.runs, args.long, args.cost_length, args.families, args.lines = "8,16", 1, 24, 12, True, 8
    if args.families:
        family_paths(int(args.lengths.split(",")[-1]), args.runs)
    if not args.costs_only:
        lengths = [int(x) for x in args.lengths.split(",")]
        run_benchmark(args.model, lengths, args.runs, args.device, args.memory_budget, args.long, args.lines)
    if not args.no_costs:
        method_costs(vzcore.load_model(args.model, device=args.device), args.cost_length, args.runs, args.memory_budget)


if __name__ == "__main__":
    main()
