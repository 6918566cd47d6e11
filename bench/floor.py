"""How near the fast path runs to its floor: `python -m bench.floor --model minilm --lengths 16,64,256`.

The floor is each layer's down projection of every visible pair alone (`bench.core.down_projection_floor`:
the matmuls no exact method can skip). Each run times the fast path and the floor back to back, in
CPU seconds of this process on a CPU (other work on a shared machine inflates wall time, not CPU
time), and the ratio is taken per run; the table gives the median and the spread over runs. With
`--compare`, the fast path with its compiled passes switched off (`VZ_KERNELS=0`: the torch passes)
is timed in the same runs.
"""

from __future__ import annotations

import os
import statistics
import time

import torch

import vzcore
from bench.core import down_projection_floor, map_entries, sentence
from vzcore.ops import kernels


def _cpu_timed(fn, device: torch.device) -> float:
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = clock()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return clock() - start


def _kernels(on: bool) -> None:
    os.environ["VZ_KERNELS"] = "1" if on else "0"
    kernels._compiled.cache_clear()


def run(model: str, lengths: list[int], runs: int, compare: bool, device: str | None) -> None:
    handle = vzcore.load_model(model, device=device)
    dev = handle.device
    if dev.type == "cpu":
        vzcore.keep_freed_memory()
    geo = handle.geometry
    clock = "wall s" if dev.type == "cuda" else "CPU s"
    print(f"model {model}: {geo.num_layers} layers, d={geo.hidden}, d_ff={geo.ffn}; {torch.get_num_threads()} threads")
    header = ["n", f"fast {clock}", f"floor {clock}", "floor/fast", "min–max"]
    if compare:
        header += [f"torch passes {clock}", "floor/torch passes", "torch passes/fast"]
    print(" | ".join(header))
    for n in lengths:
        ids = sentence(handle, n)
        floor = down_projection_floor(map_entries(n, n, handle.family.causal), geo.ffn, geo.hidden, geo.num_layers, dev)
        variants: list[tuple[str, bool | None]] = [("fast", True)]
        if compare:
            variants.append(("torch", False))
        times: dict[str, list[float]] = {"fast": [], "torch": [], "floor": []}
        for _name, on in variants:  # warm up (compile or load the kernels, fill the weight caches)
            _kernels(bool(on))
            vzcore.score(handle, [ids])
        floor()
        for k in range(runs):  # interleaved, alternating the order
            order = [*variants, ("floor", None)]
            for name, on in order if k % 2 == 0 else order[::-1]:
                if on is not None:
                    _kernels(on)
                    vzcore.score(handle, [ids])  # the switch reloads the kernels: not timed
                fn = floor if name == "floor" else (lambda ids=ids: vzcore.score(handle, [ids]))
                times[name].append(_cpu_timed(fn, dev))
        _kernels(True)
        fast, fl = statistics.median(times["fast"]), statistics.median(times["floor"])
        ratios = [f / s for f, s in zip(times["floor"], times["fast"], strict=True)]
        cells = [f"{n}", f"{fast:.4f}", f"{fl:.4f}", f"{statistics.median(ratios):.2f}"]
        cells.append(f"{min(ratios):.2f}–{max(ratios):.2f}")
        if compare:
            plain = statistics.median(times["torch"])
            cells += [f"{plain:.4f}", f"{fl / plain:.2f}", f"{plain / fast:.2f}"]
        print(" | ".join(cells))


def main(argv: list[str] | None = None) -> None:
    """Time the fast path against its floor (prints a table)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=main.__doc__)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--lengths", default="16,64,256", help="comma-separated sentence lengths in tokens")
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs per length")
    parser.add_argument("--compare", action="store_true", help="also time the torch passes (no compiled kernels)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--quick", action="store_true", help="a small run of every code path (the test suite runs it)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.lengths, args.runs, args.compare = "8,16", 1, True
    run(args.model, [int(x) for x in args.lengths.split(",")], args.runs, args.compare, args.device)


if __name__ == "__main__":
    main()
