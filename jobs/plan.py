"""Cut the examples into deterministic parts and estimate what scoring them costs."""

from __future__ import annotations

from dataclasses import dataclass

from vzcore.store.layout import packed_size

__all__ = ["Estimate", "estimate", "plan_parts", "token_lengths"]


def plan_parts(count: int, part_size: int) -> list[dict]:
    """Return parts `[k*part_size, min((k+1)*part_size, count))`: earlier parts never move when `count` grows."""
    if part_size < 1:
        raise ValueError("part size must be at least 1")
    return [
        {"part": k, "start": a, "stop": min(a + part_size, count)} for k, a in enumerate(range(0, count, part_size))
    ]


def token_lengths(tokenizer, texts, limit: int | None) -> tuple[list[int], int]:
    """Return each text's token count as scored (cut at `limit`; 0 for an empty or non-string text)
    and how many texts are longer than `limit` (they will be truncated)."""
    out, cut = [], 0
    for t in texts:
        if not isinstance(t, str) or not t.strip():
            out.append(0)
            continue
        n = len(tokenizer(t)["input_ids"])
        cut += limit is not None and n > limit
        out.append(min(n, limit) if limit is not None else n)
    return out, cut


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

    def lines(self) -> list[str]:
        return [
            f"examples     {self.examples} ({self.empty} empty, {self.truncated} to be truncated)",
            f"tokens       {self.tokens}",
            f"pairs        {self.pairs}",
            f"FLOPs        {self.flops:.3g} (rough)",
            f"store bytes  {self.store_bytes / 2**20:.1f} MiB before compression",
        ]


def estimate(
    lengths: list[int],
    *,
    layers: int,
    hidden: int,
    ffn: int,
    causal: bool,
    methods: list[str],
    itemsize: int,
    truncated: int = 0,
) -> Estimate:
    """Estimate from token counts (0 = empty). Value zeroing re-runs each stored layer once per
    (target, source) pair it computes (attention output + feed-forward per pair: `n²` pairs, or
    `n(n+1)/2` for causal models, which skip `j > i`); other methods cost about one forward."""
    per_token_layer = 2 * (4 * hidden * hidden + 2 * hidden * ffn)  # one token through one block
    forward = sum(n * per_token_layer * layers for n in lengths)
    pairs = sum(n * (n + 1) // 2 if causal else n * n for n in lengths) * layers
    vz = pairs * 2 * (hidden * hidden + 2 * hidden * ffn)
    flops = forward * len(methods) + (vz if "value_zeroing" in methods else 0)
    values = sum(packed_size(n, layers, causal) for n in lengths)
    tokens = sum(lengths)
    return Estimate(
        examples=len(lengths),
        empty=sum(1 for n in lengths if n == 0),
        truncated=truncated,
        tokens=tokens,
        pairs=pairs,
        flops=float(flops),
        store_bytes=values * itemsize * len(methods) + tokens * 16,
    )
