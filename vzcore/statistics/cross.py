"""Statistics of cross-attention maps `[L, n_tgt, n_src]`: decoder tokens (rows) reading encoder positions (columns).

A cross map relates two streams, so the statistics of a self-attention map that need one stream
read by itself do not apply: there is no diagonal (no mass a token *keeps*, no context mass), no
offset `j - i` (no previous / next / near / far token), no token type that both gives and keeps.
What a cross row says is how a target token spreads over the source, and these are its statistics,
each a mean over the rows that count (scored, and at least two source positions,
`vzcore.statistics.rows`):

- `special_mass`: the mass on special source tokens ([CLS], </s>, ...; an audio frame is never special);
- `punct_mass`: the mass on punctuation source tokens;
- `max_mass`: the row's largest entry (how peaked it is);
- `peak_position`: where the strongest source sits, `argmax_j / (n_src - 1)` in [0, 1] (ties: the first),
  so 0 is the source's start and 1 its end: compared with the row's own place it shows monotone alignment;
- `entropy`: the row's entropy over `log(n_src)` (rows all zero left out);
- `zero_rows`: scored rows whose entries are all zero;
- agreement: the per-row Spearman correlation of two methods' rows (rows of at least three sources,
  non-constant in both), averaged per example, then over examples.

Float64 sums that merge by addition, like `vzcore.statistics.partial`; `add_example` is the reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from vzcore.statistics.rows import MIN_ROW_ENTRIES, scored_rows

__all__ = ["CROSS_SUMS", "CrossStats"]

CROSS_SUMS = ("rows", "special_mass", "punct_mass", "max_mass", "peak_position", "entropy_sum", "entropy_rows",
              "zero_rows")  # fmt: skip


@dataclass
class CrossStats:
    """Sums over some examples' cross maps, per (method, layer); `merge` adds another's."""

    methods: tuple[str, ...]
    num_layers: int
    sums: dict[str, np.ndarray] = field(default_factory=dict)  # name -> `[M, L]`
    agree_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))  # `[P, L]`
    agree_count: np.ndarray = field(default_factory=lambda: np.zeros(0))
    examples: int = 0
    tokens: int = 0  # target tokens (rows) of the scored examples
    status_counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = (len(self.methods), self.num_layers)
        if not self.sums:
            self.sums = {name: np.zeros(shape) for name in CROSS_SUMS}
        if not self.agree_sum.size:
            self.agree_sum = np.zeros((len(self.pairs), self.num_layers))
            self.agree_count = np.zeros((len(self.pairs), self.num_layers))

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(a, b) for k, a in enumerate(self.methods) for b in self.methods[k + 1 :]]

    def count_status(self, name: str, k: int = 1) -> None:
        self.status_counts[name] = self.status_counts.get(name, 0) + k

    def add_example(self, maps: Mapping[str, np.ndarray], special: Sequence[bool], punct: Sequence[bool]) -> None:
        """Add one example: `maps[method]` `[L, n_tgt, n_src]` (NaN rows unscored); `special`, `punct` `[n_src]`."""
        self.examples += 1
        special_arr, punct_arr = np.asarray(special, bool), np.asarray(punct, bool)
        counted: dict[str, np.ndarray] = {}
        clean: dict[str, np.ndarray] = {}
        for mi, method in enumerate(self.methods):
            x = np.asarray(maps[method], dtype=np.float64)
            n_tgt, n_src = x.shape[1:]
            if mi == 0:
                self.tokens += n_tgt
            scored = scored_rows(x)  # `[L, n_tgt]`
            x = np.where(np.isnan(x), 0.0, x)
            keep = scored & (n_src >= MIN_ROW_ENTRIES)
            row_sum = x.sum(-1)
            s = self.sums
            s["zero_rows"][mi] += (scored & (row_sum == 0)).sum(1)
            s["rows"][mi] += keep.sum(1)
            s["special_mass"][mi] += (x[..., special_arr].sum(-1) * keep).sum(1)
            s["punct_mass"][mi] += (x[..., punct_arr].sum(-1) * keep).sum(1)
            s["max_mass"][mi] += (x.max(-1) * keep).sum(1)
            s["peak_position"][mi] += (x.argmax(-1) / max(n_src - 1, 1) * keep).sum(1)
            ok = keep & (row_sum > 0)
            p = x / np.where(row_sum > 0, row_sum, 1.0)[..., None]
            plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
            entropy = -plogp.sum(-1) / np.log(max(n_src, 2))
            s["entropy_sum"][mi] += np.where(ok, entropy, 0.0).sum(1)
            s["entropy_rows"][mi] += ok.sum(1)
            counted[method], clean[method] = scored, x
        for pi, (a, b) in enumerate(self.pairs):
            rho, ok = _row_spearman(clean[a], clean[b], counted[a] & counted[b])
            has = ok.any(1)  # `[L]`
            self.agree_sum[pi] += np.where(has, (rho * ok).sum(1) / np.maximum(ok.sum(1), 1), 0.0)
            self.agree_count[pi] += has

    def merge(self, other: CrossStats) -> CrossStats:
        """Add `other`'s sums into this one (in place) and return it."""
        if (other.methods, other.num_layers) != (self.methods, self.num_layers):
            raise ValueError("cannot merge cross statistics of other methods or layers")
        for name, value in other.sums.items():
            self.sums[name] += value
        self.agree_sum += other.agree_sum
        self.agree_count += other.agree_count
        self.examples += other.examples
        self.tokens += other.tokens
        for name, k in other.status_counts.items():
            self.count_status(name, k)
        return self

    def means(self) -> dict[str, np.ndarray]:
        """Per (method, layer): each statistic's mean over the rows that count (NaN where none)."""
        s = self.sums
        with np.errstate(invalid="ignore", divide="ignore"):
            out = {name: s[name] / s["rows"] for name in ("special_mass", "punct_mass", "max_mass", "peak_position")}
            out["entropy"] = s["entropy_sum"] / s["entropy_rows"]
            out["agreement"] = self.agree_sum / self.agree_count
        return out


def _row_spearman(a: np.ndarray, b: np.ndarray, scored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row `[L, n_tgt]`: Spearman of two methods' rows (ties averaged) and whether it counts."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a, axis=-1), rankdata(b, axis=-1)
    ca, cb = ra - ra.mean(-1, keepdims=True), rb - rb.mean(-1, keepdims=True)
    va, vb = (ca * ca).sum(-1), (cb * cb).sum(-1)
    ok = scored & (a.shape[-1] >= 3) & (va > 0) & (vb > 0)
    return np.where(ok, (ca * cb).sum(-1) / np.sqrt(np.where(ok, va * vb, 1.0)), 0.0), ok
