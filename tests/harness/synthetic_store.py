"""Build small stores without the job: scored by a model (tests, notebooks) or random but valid (benchmarks).

They write the root attributes and the parts through the store's own writers (`vzcore.store.root`,
`.writer`: arrays and tables) and mark each part in the completion index (`.completion`), as the
job's driver does. The scoring job remains the way to build real stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vzcore.store.layout import STATUS_SCORED
from vzcore.store.location import Location

__all__ = ["init_root", "plan_parts", "write_random_pair_store", "write_random_store", "write_scored_store"]


def init_root(
    path: str | Path,
    *,
    methods: Sequence[str],
    layers: Sequence[int],
    causal: bool,
    plan: list[dict],
    model_num_layers: int | None = None,
    model_type: str = "bert",
    special_token_ids: Sequence[int] = (),
    config: dict | None = None,
    identity: dict | None = None,
    store_form: dict | None = None,
    targets: dict | None = None,
    sites: list[dict] | None = None,
    source_kind: str | None = None,
) -> None:
    """Create the root group with the layout's attributes and an empty completion index (overwriting
    whatever was there)."""
    from vzcore.store.completion import write_done
    from vzcore.store.root import RootAttrs, write_root_attrs

    root = Location(str(path)).open_group(mode="w")
    attrs = RootAttrs(
        methods=list(methods),
        layers=[int(x) for x in layers],
        model_num_layers=model_num_layers if model_num_layers is not None else max(layers, default=-1) + 1,
        causal=bool(causal),
        model_type=model_type,
        plan=plan,
        special_token_ids=[int(t) for t in special_token_ids],
        config=config or {},
        identity=identity or {m: f"synthetic-{m}" for m in methods},
        data_identity="synthetic",
        store_form=store_form,
        targets=targets,
        sites=sites,
        source_kind=source_kind,
    )
    write_root_attrs(root, attrs)
    write_done(root, [0] * len(plan))


def plan_parts(count: int, part_size: int) -> list[dict]:
    """Parts of `part_size` examples (the job sizes its parts by bytes; fixed counts suit tests)."""
    starts = range(0, count, part_size)
    return [{"part": k, "start": a, "stop": min(a + part_size, count)} for k, a in enumerate(starts)]


def _write_done_part(location: Location, planned: dict, outcomes, methods, **write) -> None:
    """Write one part and mark it done in the index: the worker's write, then the driver's mark."""
    from vzcore.store.completion import mark_done
    from vzcore.store.writer import write_part

    k = planned["part"]
    write_part(location, k, outcomes, methods, start=planned["start"], stop=planned["stop"], **write)
    # The store's methods are these, in this order (`init_root`): the part is done for every bit.
    mark_done(location.open_group(mode="r+"), k, (1 << len(methods)) - 1)


def write_scored_store(
    path: str | Path,
    handle,
    texts: Sequence[str] | Sequence[Sequence[int]],
    methods: Sequence[str],
    part_size: int = 4,
) -> None:
    """Score `texts` with `vzcore.score` and write them as a store of `part_size`-example parts."""
    import vzcore
    from vzcore.store.writer import ExampleOutcome

    results = vzcore.score(handle, list(texts), methods=list(methods))
    causal = handle.family.causal
    special = list(getattr(handle.tokenizer, "all_special_ids", None) or [])
    plan = plan_parts(len(texts), part_size)
    init_root(
        path,
        methods=methods,
        layers=results[0].layers,
        causal=causal,
        plan=plan,
        model_num_layers=handle.num_layers,
        model_type=handle.config.model_type,
        special_token_ids=special,
        config={"model": handle.config.model_type, "methods": list(methods), "part_size": part_size},
    )
    for p in plan:
        outs = [ExampleOutcome.from_result(i, results[i]) for i in range(p["start"], p["stop"])]
        _write_done_part(
            Location(str(path)),
            p,
            outs,
            methods,
            causal=causal,
            num_maps=len(results[0].layers),
            texts=[t if isinstance(t, str) else None for t in texts[p["start"] : p["stop"]]],
            special_ids=special,
        )


def random_maps(rng: np.random.Generator, layers: int, n: int, causal: bool) -> np.ndarray:
    """Return `[layers, n, n]` random rows summing to 1 (lower triangular when causal); skewed like real maps."""
    m = rng.random((layers, n, n), dtype=np.float32) ** 4
    m += np.eye(n, dtype=np.float32) * rng.random((layers, n, 1), dtype=np.float32)
    if causal:
        m = np.tril(m)
    return m / m.sum(-1, keepdims=True)


def write_random_store(
    path: str | Path,
    num_examples: int,
    *,
    methods: Sequence[str] = ("value_zeroing", "attention", "attention_norm"),
    num_layers: int = 6,
    causal: bool = False,
    part_size: int = 500,
    lengths: tuple[int, int] = (8, 64),
    vocab: int = 1000,
    seed: int = 0,
    fail_every: int = 0,
) -> None:
    """Write a store of random but valid maps (rows sum to 1); for throughput benchmarks and tests only.

    Token 0 plays [CLS]/BOS and 1 [SEP]/EOS (special); ids 2..9 are punctuation strings.
    `fail_every > 0` marks every such example failed.
    """
    from vzcore.store.writer import ExampleOutcome

    rng = np.random.default_rng(seed)
    punct = [".", ",", "!", "?", ";", ":", "'", "-"]
    names = ["[CLS]", "[SEP]", *punct] + [f"w{k}" for k in range(10, vocab)]
    plan = plan_parts(num_examples, part_size)
    init_root(
        path,
        methods=methods,
        layers=list(range(num_layers)),
        causal=causal,
        plan=plan,
        model_type="gpt2" if causal else "bert",
        special_token_ids=[0, 1],
        config={"model": "random", "methods": list(methods), "part_size": part_size},
    )
    for p in plan:
        outs = []
        for i in range(p["start"], p["stop"]):
            if fail_every and i % fail_every == fail_every - 1:
                outs.append(ExampleOutcome.failed(i, "synthetic failure"))
                continue
            n = int(rng.integers(lengths[0], lengths[1] + 1))
            ids = [0, *rng.integers(2, vocab, n - 2).tolist(), 1]
            outs.append(
                ExampleOutcome(
                    i,
                    STATUS_SCORED,
                    tokens=[names[t] for t in ids],
                    token_ids=ids,
                    word_ids=[None, *range(n - 2), None],
                    scores={m: random_maps(rng, num_layers, n, causal) for m in methods},
                )
            )
        _write_done_part(
            Location(str(path)),
            p,
            outs,
            methods,
            causal=causal,
            num_maps=num_layers,
            texts=[f"example {i}" for i in range(p["start"], p["stop"])],
            special_ids=[0, 1],
        )


PAIR_SITES = (("encoder", (0, 1), 2), ("decoder", (0, 1), 2), ("cross", (1,), 2))  # (name, layers, blocks)


def write_random_pair_store(
    path: str | Path,
    num_examples: int,
    *,
    methods: Sequence[str] = ("value_zeroing", "attention"),
    sites: Sequence[tuple[str, Sequence[int], int]] = PAIR_SITES,
    audio: bool = False,
    part_size: int = 3,
    lengths: tuple[int, int] = (3, 8),
    seed: int = 0,
    fail_every: int = 0,
    store_dtype: str = "float32",
) -> list:
    """Write a layout v5 store of random encoder–decoder pairs (`sites`: `(name, layers, stack blocks)`);
    return the outcomes written (`vzcore.store.pairwriter.PairOutcome`), to compare readers against.

    Source token 0 and target token 0 play the start / [CLS] token (special), ids 2..9 punctuation;
    with `audio` the source is frames (ids -1, time labels); every third target is greedy."""
    from vzcore.store.completion import mark_done
    from vzcore.store.pairwriter import PairOutcome, frame_labels, write_pair_part
    from vzcore.store.sites import SiteLayout

    rng = np.random.default_rng(seed)
    layouts = [SiteLayout(name, tuple(layers), count) for name, layers, count in sites]
    punct = [".", ",", "!", "?", ";", ":", "'", "-"]
    names = ["<s>", "</s>", *punct] + [f"w{k}" for k in range(10, 60)]
    plan = plan_parts(num_examples, part_size)
    init_root(
        path,
        methods=methods,
        layers=sorted({k for s in layouts for k in s.layers}),
        model_num_layers=max(s.num_layers for s in layouts),
        causal=False,
        plan=plan,
        model_type="whisper" if audio else "t5",
        special_token_ids=[0, 1],
        sites=[s.to_attr() for s in layouts],
        source_kind="frames" if audio else "tokens",
    )
    root = Location(str(path)).open_group(mode="r+")
    written = []
    for p in plan:
        outs = []
        for i in range(p["start"], p["stop"]):
            if fail_every and i % fail_every == fail_every - 1:
                outs.append(PairOutcome.failed(i, "synthetic failure"))
                continue
            ns, nt = (int(rng.integers(lengths[0], lengths[1] + 1)) for _ in range(2))
            src = [-1] * ns if audio else [0, *rng.integers(2, 60, ns - 1).tolist()]
            tgt = [0, *rng.integers(2, 60, nt - 1).tolist()]
            scores = {}
            for m in methods:
                scores[m] = {}
                for s in layouts:
                    layers, rows, cols = s.shape(ns, nt)
                    x = rng.random((layers, rows, cols), dtype=np.float32) ** 4
                    x = np.tril(x) if s.causal else x
                    scores[m][s.name] = x / x.sum(-1, keepdims=True)
            outs.append(
                PairOutcome(
                    i,
                    source_tokens=frame_labels(ns, 0.02) if audio else [names[t] for t in src],
                    source_ids=src,
                    source_word_ids=[None] * ns if audio else [None, *range(ns - 1)],
                    target_tokens=[names[t] for t in tgt],
                    target_ids=tgt,
                    target_word_ids=[None, *range(nt - 1)],
                    decoding="greedy" if i % 3 == 2 else "forced",
                    scores=scores,
                )
            )
        ids = range(p["start"], p["stop"])
        rows = [{"source": f"source {i}", "target": None if i % 3 == 2 else f"target {i}"} for i in ids]
        write_pair_part(path, p["part"], outs, methods, sites=layouts, start=p["start"], stop=p["stop"],
                        rows=rows, special_ids=[0, 1], store_dtype=store_dtype)  # fmt: skip
        mark_done(root, p["part"], (1 << len(methods)) - 1)
        written.extend(outs)
    return written
