"""Benchmark the reduced store forms: bytes per example dense against top-k and word-pooled, the kept
mass, and how far the aggregate statistics of a top-k store are from the dense store's.

    python -m bench.sparse              # n = 64, 512 (real MiniLM), 2048 (synthetic); 100 chatterbot lines
    python -m bench.sparse --quick      # fewer examples, one layer at n = 512 (the test suite runs it)

Sizes: each length's examples are written as one part with the store's own writer (`write_part`),
dense, `top-k=8,threshold=0.005` (HeadVis/Neuronpedia's choice) and `words` (each example's maps
pooled to its words by `ScoreResult.word_level`, with its word arrays), and the bytes of the files
under the part's `scores/` and `topk/` folders and its word arrays (the maps, compressed as stored:
zstd, float16) are divided by the examples. n = 64 and 512 are real MiniLM maps (all-MiniLM-L6-v2, value zeroing and
attention) of chatterbot lines joined until the text has n tokens. MiniLM reads at most 512 tokens
and SmolLM2 at 2048 takes many minutes per text on a CPU, so n = 2048 is synthetic: rows with a
first-token sink, a diagonal, a local window decaying with distance and a skewed random rest (see
`synthetic_maps`), meant to look like real rows, not to be them.

Statistics: the first `--lines` chatterbot lines are scored on MiniLM, written dense and top-k,
and both are aggregated (`vz aggregate`); per statistic and method the range over layers of the
difference is printed, and each mass is checked against its bound `[-mean(1 - kept mass), 0]` per
method and layer (docs/reading-and-aggregating.md).
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import typer

from vzcore.store.forms import StoreForm, top_k_rows
from vzcore.store.layout import part_path
from vzcore.store.location import Location

METHODS = ("value_zeroing", "attention")
TOP_K = StoreForm("top-k")  # k=8, threshold=0.005
WORDS = StoreForm("words")


def synthetic_maps(rng: np.random.Generator, layers: int, n: int) -> np.ndarray:
    """Return `[layers, n, n]` rows summing to 1: 25 % on token 0 (a sink), 20 % on the diagonal, 35 %
    on a window decaying as exp(-|i - j| / 4), 20 % spread as skewed noise (uniform^8)."""
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    local = np.exp(-np.abs(i - j) / 4.0)
    local /= local.sum(-1, keepdims=True)
    out = np.empty((layers, n, n), dtype=np.float32)
    for layer in range(layers):
        noise = rng.random((n, n), dtype=np.float32) ** 8
        noise /= noise.sum(-1, keepdims=True)
        m = 0.35 * local + 0.2 * noise + 0.2 * np.eye(n)
        m[:, 0] += 0.25
        out[layer] = m / m.sum(-1, keepdims=True)
    return out


def texts_of(tok, n: int, count: int, lines: list[str]) -> list[str]:
    """Return `count` texts of at least `n` tokens: consecutive chatterbot lines joined."""
    texts, k = [], 0
    for _ in range(count):
        parts: list[str] = []
        while len(tok(" ".join(parts))["input_ids"]) < n:
            parts.append(lines[k % len(lines)])
            k += 1
        texts.append(" ".join(parts))
    return texts


def real_maps(handle, n: int, count: int, lines: list[str], layers) -> list:
    """Return `count` MiniLM `ScoreResult`s of chatterbot lines joined to `n` tokens."""
    import vzcore

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the texts are cut to n tokens on purpose
        return vzcore.score(handle, texts_of(handle.tokenizer, n, count, lines), methods=list(METHODS),
                            layers=layers, max_length=n, batch_size=1)  # fmt: skip


def part_bytes(maps: list[dict[str, np.ndarray]], form: StoreForm, where: Path, results=None) -> int:
    """Write `maps` as one part in `form` (`words`: `results` pooled to their words); return the bytes
    of its maps (`scores/` and `topk/` files, and a words part's word arrays, which only it stores)."""
    from vzcore.store.words import WORD_ARRAYS
    from vzcore.store.writer import ExampleOutcome, write_part

    outs = []
    for i, m in enumerate(maps):
        n = next(iter(m.values())).shape[-1]
        if form.words:
            outs.append(ExampleOutcome.from_words(i, results[i]))
        else:
            outs.append(ExampleOutcome(i, tokens=["t"] * n, token_ids=[5] * n, word_ids=list(range(n)), scores=m))
    layers = next(iter(maps[0].values())).shape[0]
    write_part(Location(str(where)), 0, outs, list(METHODS), causal=False, num_maps=layers, form=form)
    part = where / part_path(0)
    subs = ("scores", "topk", *WORD_ARRAYS)
    return sum(f.stat().st_size for sub in subs for f in (part / sub).rglob("*") if f.is_file())


def masses(maps: list[dict[str, np.ndarray]], method: str) -> np.ndarray:
    """Return every row's kept mass of `method` under top-8 at 0.005 (float16 values), all examples."""
    out = []
    for m in maps:
        x = m[method]
        out.append(top_k_rows(x, np.arange(x.shape[1]), TOP_K.k, TOP_K.threshold, False, "float16").mass)
    return np.concatenate(out)


def size_rows(handle, quick: bool, counts: tuple[int, int, int], lines: list[str], tmp: Path) -> list[str]:
    rng = np.random.default_rng(0)
    plan = [(64, counts[0], "MiniLM", None), (512, counts[1], "MiniLM", [5] if quick else None)]
    plan.append((2048, counts[2], "synthetic", None))
    rows = []
    for n, count, source, layers in plan:
        results: list | None = None
        if source == "MiniLM":
            results = real_maps(handle, n, count, lines, layers)
            maps = [dict(r.scores) for r in results]
        else:
            maps = [{m: synthetic_maps(rng, 2 if quick else 6, n) for m in METHODS} for _ in range(count)]
        dense = part_bytes(maps, StoreForm(), tmp / f"d{n}")
        sparse = part_bytes(maps, TOP_K, tmp / f"s{n}")
        words = "| (no words) | | "  # synthetic maps have no text to pool
        if results is not None:
            pooled = part_bytes(maps, WORDS, tmp / f"w{n}", results)
            per_token = np.mean([len(r.word_level().words) / r.n for r in results])
            words = f"| {pooled / count / 1024:,.1f} | {dense / pooled:,.2f}x | {per_token:.2f} "
        num_layers = next(iter(maps[0].values())).shape[0]
        kept = []
        for m in METHODS:
            mass = masses(maps, m)
            kept.append(f"{mass.mean():.3f} / {np.quantile(mass, 0.05):.3f} / {(mass >= 0.95).mean():.0%}")
        rows.append(
            f"| {n} | {source}, {num_layers} layer(s), {count} ex. | {dense / count / 1024:,.1f} | "
            f"{sparse / count / 1024:,.1f} | {dense / sparse:,.1f}x {words}| {' | '.join(kept)} |"
        )
    return rows


def aggregate_rows(handle, count: int, lines: list[str], tmp: Path) -> list[str]:
    """Aggregate MiniLM's maps of `count` chatterbot lines stored dense and top-k; compare."""
    import pandas as pd

    import vzcore
    from jobs.aggregate import AggregateConfig, aggregate
    from tests.harness.synthetic_store import init_root
    from vzcore.store.completion import mark_done
    from vzcore.store.writer import ExampleOutcome, write_part

    results = vzcore.score(handle, lines[:count], methods=list(METHODS))
    special = list(handle.tokenizer.all_special_ids)
    tables = {}
    for name, form in (("dense", StoreForm()), ("top-k", TOP_K)):
        path = tmp / f"agg-{name}.zarr"
        plan = [{"part": 0, "start": 0, "stop": count}]
        init_root(path, methods=METHODS, layers=results[0].layers, causal=False, plan=plan,
                  special_token_ids=special, store_form=form.to_attr() if form.reduced else None)  # fmt: skip
        outs = [ExampleOutcome.from_result(i, r) for i, r in enumerate(results)]
        loc = Location(str(path))
        write_part(loc, 0, outs, list(METHODS), causal=False, num_maps=len(results[0].layers), start=0, stop=count,
                   special_ids=special, form=form)  # fmt: skip
        mark_done(loc.open_group(mode="r+"), 0, 3)
        aggregate(str(path), tmp / f"agg-{name}", config=AggregateConfig(plots=False), log=lambda *a: None)
        tables[name] = {t: pd.read_parquet(tmp / f"agg-{name}" / t) for t in ("layers.parquet", "agreement.parquet")}
    store = vzcore.open_store(tmp / "agg-top-k.zarr")
    lost = {m: [] for m in METHODS}
    for block in store.iter_examples(methods=list(METHODS)):
        for _, r in block:
            for m in METHODS:
                lost[m].append(1 - r.kept_mass[m])  # `[layers, n]`: every row of an encoder counts (n >= 2)
    bound = {m: np.concatenate(v, 1).mean(1) for m, v in lost.items()}  # `[layers]` mean lost mass
    d, s = (tables[k]["layers.parquet"].query("bucket == 'all'").set_index(["method", "layer"]) for k in tables)
    limit = pd.Series({(m, layer): bound[m][k] for m in METHODS for k, layer in enumerate(results[0].layers)})
    out = ["mean lost mass per row (1 - kept), by layer: "
           + "; ".join(f"{m} " + " ".join(f"{b:.3f}" for b in bound[m]) for m in METHODS)]  # fmt: skip
    masses = ("self_mass", "context_mass", "special_mass", "punct_mass", "prev_mass", "near_mass", "far_mass")
    for col in (*masses, "entropy"):
        diff = s[col] - d[col]
        held = "" if col == "entropy" else ("yes" if ((diff <= 1e-6) & (diff >= -limit - 1e-6)).all() else "NO")
        per = [f"{diff[m].min():+.4f} .. {diff[m].max():+.4f}" for m in METHODS]
        out.append(f"| {col} | {' | '.join(per)} | {held} |")
    agree = tables["top-k"]["agreement.parquet"].query("bucket == 'all'")["spearman"].to_numpy()
    agree = agree - tables["dense"]["agreement.parquet"].query("bucket == 'all'")["spearman"].to_numpy()
    out.append(f"| agreement (Spearman of the pair) | {agree.min():+.4f} .. {agree.max():+.4f} | | |")
    return out


def main(
    quick: bool = typer.Option(False, help="a small run of every code path (one layer at n = 512)"),
    lines: int = typer.Option(100, help="chatterbot lines aggregated dense and top-k"),
    examples: str = typer.Option("16,2,2", help="examples at n = 64, 512, 2048"),
    sizes: bool = typer.Option(True, help="measure the sizes (--no-sizes: only the statistics)"),
    threads: int = typer.Option(2, help="torch threads (sizes and masses do not depend on it)"),
) -> None:
    import torch

    import vzcore
    from jobs.score.data import chatterbot_lines

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    corpus = chatterbot_lines()
    handle = vzcore.load_model("minilm")
    count = 12 if quick else lines
    counts = (2, 1, 1) if quick else tuple(int(x) for x in examples.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        print("# bytes of maps per example, dense vs top-8 >= 0.005 vs words (float16, zstd), and top-k's kept mass")
        print("kept mass per row: mean / 5th percentile / share of rows keeping >= 0.95; words: W / n per example")
        print("| n | maps from | dense KiB | top-k KiB | dense / top-k | words KiB | dense / words | words per token "
              "| kept: value_zeroing | kept: attention |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|---|")
        for row in size_rows(handle, quick, counts, corpus, Path(tmp)) if sizes else []:  # type: ignore[arg-type]
            print(row, flush=True)
        print(f"\n# aggregate of {count} chatterbot lines on MiniLM: top-k store minus dense store (all lengths)")
        rows = aggregate_rows(handle, count, corpus, Path(tmp))
        print(rows[0])
        print("top-k minus dense, range over the layers (all lengths pooled)")
        print(f"| statistic | {' | '.join(METHODS)} | in [-lost mass, 0] per method and layer |")
        print("|---|---|---|---|")
        print("\n".join(rows[1:]))
    import os

    load = os.getloadavg()[0]
    took = time.perf_counter() - t0
    print(f"\nseconds: {took:.0f} (torch threads {threads}; 2 cores shared, load average {load:.1f})")


if __name__ == "__main__":
    typer.run(main)
