"""Cut the examples into deterministic parts sized by the maps they will hold, and estimate the cost.

A part is the unit of work, writing and resume. Parts are cut greedily in id order: a part ends
before the example that would take it past `part_mb` MiB of float16 maps per method (or past
`part_size` examples, if set), so a corpus of short sentences is a few hundred parts, not tens of
thousands, and every part is a few tens of MB to write and read whatever the model. Without
`part_size`, a short run is still cut into `SPREAD_PARTS` parts (of at least `MIN_SPREAD_ROWS`
examples): parts are the unit of work, so a run of one part keeps one actor busy and the rest idle.
Cut from the start, an earlier part never moves when the corpus grows (a larger `--limit` re-plans
only the last part and what follows it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jobs.score.config import DEFAULT_PART_MB
from vzcore.families.spec import Geometry
from vzcore.maps import map_entries
from vzcore.store.forms import FORM_TOP_K, StoreForm
from vzcore.store.layout import packed_size

__all__ = ["Estimate", "cut_parts", "estimate", "plan_parts", "replan_from", "replica_bytes", "token_lengths"]

TOKENIZE_BATCH = 1024  # texts a tokenizer call counts at once
# Without `--part-size`, a run's new rows go into at least this many parts (when it has the rows):
# enough for every actor of a small cluster to take a share and for the last part not to run alone,
# few enough that a short run's parts are not a crowd of tiny objects. Big runs are cut by MiB.
SPREAD_PARTS = 8
MIN_SPREAD_ROWS = 4


def replan_from(stored_plan: list[dict]) -> tuple[list[dict], int, int]:
    """Where a run's planning starts from a stored plan: the parts kept (all but the last), the first row
    planned anew (the last part's start), and how many rows that last part holds (0: none stored).

    The last part is planned again because a larger limit may extend it; cut no smaller than it was
    (`cut_parts(at_least=...)`), a rerun of the same rows plans it exactly as stored, whatever cut it
    (the spread of a short run, or MiB alone in a store planned before the spread existed)."""
    kept = stored_plan[:-1]
    last = stored_plan[-1]["stop"] - stored_plan[-1]["start"] if stored_plan else 0
    return kept, (kept[-1]["stop"] if kept else 0), last


def plan_parts(
    lengths: Sequence[int],
    *,
    layers: int,
    causal: bool,
    part_mb: float = DEFAULT_PART_MB,
    part_size: int | None = None,
    start: int = 0,
    first_part: int = 0,
    form: StoreForm | None = None,
    last_row_only: bool = False,
    at_least: int = 0,
) -> list[dict]:
    """Cut rows `start, start+1, ...` (token counts `lengths`, 0 for empty) into parts of at most
    `part_mb` MiB of float16 maps (one example more if a single one is larger) and at most
    `part_size` examples; number them from `first_part`.

    A reduced store is sized by what it keeps: a top-k example (`form`) by `2K + 4` float16 values a
    row (values, sources, count and mass), one row per example with `last_row_only` (`--targets
    last`); a dense store of every row is planned as before, and so is a words store (a text has at
    most as many words as tokens, unknown before it is scored)."""
    sizes = [_stored_values(n, layers, causal, form, last_row_only) for n in np.asarray(lengths, np.int64).tolist()]
    return cut_parts(sizes, part_mb=part_mb, part_size=part_size, start=start, first_part=first_part, at_least=at_least)


def cut_parts(
    sizes: Sequence[int],
    *,
    part_mb: float,
    part_size: int | None = None,
    start: int = 0,
    first_part: int = 0,
    at_least: int = 0,
) -> list[dict]:
    """Cut rows `start, start+1, ...` holding `sizes` float16 values per method each into parts of at
    most `part_mb` MiB (one example more if a single one is larger) and `part_size` examples (default:
    an eighth of the rows, at least `MIN_SPREAD_ROWS`: `SPREAD_PARTS`; and, without `part_size`, no
    fewer than `at_least` examples a part: the stored part re-planned from `start`, see `replan_from`)."""
    if part_size is not None and part_size < 1:
        raise ValueError("part size must be at least 1")
    budget = part_mb * 2**20 / 2  # values per method
    cap = part_size or max(MIN_SPREAD_ROWS, -(-len(sizes) // SPREAD_PARTS), at_least)
    plan, a, values = [], start, 0
    for i, size in enumerate(sizes, start):
        if i > a and (values + size > budget or i - a >= cap):
            plan.append({"part": first_part + len(plan), "start": a, "stop": i})
            a, values = i, 0
        values += size
    if len(sizes):
        plan.append({"part": first_part + len(plan), "start": a, "stop": start + len(sizes)})
    return plan


def _stored_values(n: int, layers: int, causal: bool, form: StoreForm | None, last_row_only: bool) -> int:
    """Return about how many float16 values one example of `n` tokens keeps per method."""
    rows = min(n, 1) if last_row_only else n
    if form is not None and form.form_of(n) == FORM_TOP_K:
        return layers * rows * (2 * min(form.k, n) + 4)
    if last_row_only:
        return layers * n
    return packed_size(n, n, layers, causal)


def token_lengths(tokenizer, texts: Sequence[object], limit: int | None) -> tuple[np.ndarray, int]:
    """Return each text's token count as scored (cut at `limit`; 0 for an empty or non-string text)
    and how many texts are longer than `limit` (they will be truncated); batched tokenizer calls."""
    out = np.zeros(len(texts), dtype=np.int32)
    todo = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
    count = _counter(tokenizer)
    cut = 0
    for b in range(0, len(todo), TOKENIZE_BATCH):
        chunk = todo[b : b + TOKENIZE_BATCH]
        n = count([texts[i] for i in chunk])
        if limit is not None:
            cut += int((n > limit).sum())
            n = np.minimum(n, limit)
        out[chunk] = n
    return out, cut


def _counter(tokenizer):
    """Return `texts -> token counts`: a fast tokenizer's Rust backend straight (half the time of the
    Python wrapper, which builds every output field), else the tokenizer's own call."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and getattr(backend, "truncation", None) is None and hasattr(backend, "encode_batch_fast"):

        def count(texts: list[str]) -> np.ndarray:
            enc = backend.encode_batch_fast(texts, add_special_tokens=True)
            return np.fromiter(map(len, enc), dtype=np.int64, count=len(enc))

        return count

    def count_slow(texts: list[str]) -> np.ndarray:
        ids = tokenizer(texts, verbose=False)["input_ids"]
        return np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))

    return count_slow


@dataclass(frozen=True)
class Estimate:
    """What a plan costs: counts, rough FLOPs and uncompressed store bytes."""

    examples: int
    empty: int
    truncated: int  # texts longer than the token limit
    tokens: int
    pairs: int  # (target, source) pairs computed over all stored layers (causal: j <= i only)
    flops: float
    store_bytes: int
    bound: bool = False  # pairs, FLOPs and bytes are upper bounds (`--targets mask|column`: rows known only later)

    def lines(self) -> list[str]:
        most = "at most " if self.bound else ""
        return [
            f"examples     {self.examples} ({self.empty} empty, {self.truncated} to be truncated)",
            f"tokens       {self.tokens}",
            f"pairs        {most}{self.pairs}",
            f"FLOPs        {most}{self.flops:.3g} (rough)",
            f"store bytes  {most}{self.store_bytes / 2**20:.1f} MiB before compression",
        ]


def estimate(
    lengths: Sequence[int],
    *,
    layers: int,
    hidden: int,
    ffn: int,
    causal: bool,
    methods: list[str],
    itemsize: int,
    truncated: int = 0,
    targets: str = "all",
) -> Estimate:
    """Estimate from token counts (0 = empty). Value zeroing re-runs each stored layer once per
    (target, source) pair it computes (attention output + feed-forward per pair: `n²` pairs, or
    `n(n+1)/2` for causal models, which skip `j > i`); other methods cost about one forward.

    `targets` is the `--targets` kind: `last` scores and stores one row of `n` sources per example
    and layer; `mask` and `column` rows are known only once each text is tokenised, so every row
    is counted and the estimate is an upper bound (`Estimate.bound`)."""
    lengths = [int(n) for n in lengths]  # Python ints: numpy's int32 would overflow these sums
    per_token_layer = 2 * (4 * hidden * hidden + 2 * hidden * ffn)  # one token through one block
    forward = sum(n * per_token_layer * layers for n in lengths)
    # `last`: one row, its sources every token (a causal model's last token sees them all).
    entries = sum(lengths) if targets == "last" else sum(map_entries(n, n, causal) for n in lengths)
    pairs = entries * layers
    vz = pairs * 2 * (hidden * hidden + 2 * hidden * ffn)
    flops = forward * len(methods) + (vz if "value_zeroing" in methods else 0)
    values = pairs  # one stored value per (target, source) pair scored, per layer
    tokens = sum(lengths)
    return Estimate(
        examples=len(lengths),
        empty=sum(1 for n in lengths if n == 0),
        truncated=truncated,
        tokens=tokens,
        pairs=pairs,
        flops=float(flops),
        store_bytes=values * itemsize * len(methods) + tokens * 16,
        bound=targets in ("mask", "column"),
    )


RUNTIME_BYTES = 640 << 20  # a worker's interpreter, torch, tokenizer and a CPU chunk of pairs (64 MiB)


def replica_bytes(geometry: Geometry, vocab: int, chunk_budget: int | None = None) -> int:
    """Return the memory one CPU replica holds: float32 weights (blocks and embeddings, from the model's
    shape), the runtime and a chunk of pairs (`chunk_budget` when set); caps the default number of actors."""
    g = geometry
    attention = 2 * g.hidden * g.heads * g.head_dim + 2 * g.hidden * g.kv_width
    params = g.num_layers * (attention + 3 * g.hidden * g.ffn) + vocab * g.hidden
    return 4 * params + RUNTIME_BYTES + (chunk_budget or 0)
