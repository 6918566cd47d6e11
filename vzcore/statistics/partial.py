"""Mergeable corpus statistics of context-mixing maps: the math behind `vz aggregate`.

Everything is a float64 sum (or count) that merges by addition, so per-part partial statistics
computed anywhere (locally, or as Ray tasks) merge into the same result up to float64 rounding.
Each example lands in one sentence-length bucket; corpus totals are sums over buckets. The rows
summed are the rows that count (`vzcore.statistics.rows`). `PartialStats.add_example` is the
per-example reference; `vzcore.statistics.block` adds a block of examples at once (the fast path).
The statistics are of self-attention maps (`vzcore.maps.self_site`), `[L, n, n]` over one token
list: the diagonal is what a token keeps, `j - i` a relative offset, a row and a column one token.
"""

from __future__ import annotations

import functools
import itertools
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from vzcore.maps import valid_entries
from vzcore.statistics.rows import counted_rows, scored_rows
from vzcore.statistics.top import TopExamples
from vzcore.tokens import decode_piece

__all__ = [
    "DEFAULT_BUCKET_EDGES",
    "PartialStats",
    "StatsSpec",
    "is_punctuation",
]

# Sentence-length buckets by token count: [1, 16), [16, 32), ... , [512, inf).
DEFAULT_BUCKET_EDGES = (1, 16, 32, 64, 128, 256, 512)


@functools.lru_cache(maxsize=1 << 18)  # a vocabulary's worth: decoding a piece is slow (~30 us)
def is_punctuation(token: str) -> bool:
    """Return whether a raw token piece reads as punctuation only (`.`, `Ġ,`, `##.`, `▁!`, `ĠâĢĶ` for ` —`)."""
    text = decode_piece(token).strip()
    return bool(text) and all(unicodedata.category(c).startswith("P") for c in text)


def sampled_rows(row, layer, seed, every: int):
    """Return whether row `row` of the map at layer index `layer` of an example whose token ids sum to `seed`
    is ranked for the agreement when sampling about one row in `every` (uint64 arrays or scalars).

    A hash, not a stride: the rows drawn differ between examples and layers, so that no position
    ([CLS], the first word) is drawn at every layer. The compiled kernel repeats this arithmetic.
    """
    h = (
        row * np.uint64(0x9E3779B97F4A7C15)
        + layer * np.uint64(0xC2B2AE3D27D4EB4F)
        + seed * np.uint64(0x165667B19E3779F9)
    )
    h ^= h >> np.uint64(29)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(32)
    return h % np.uint64(every) == np.uint64(0)


@dataclass(frozen=True)
class StatsSpec:
    """What the statistics are computed over; two partials merge only if their specs are equal."""

    methods: tuple[str, ...]
    num_layers: int  # maps per example (the store's `layers`)
    causal: bool  # the self site's: maps hold only their lower triangle
    bucket_edges: tuple[int, ...] = DEFAULT_BUCKET_EDGES  # lower bounds of the length buckets
    max_offset: int = 16  # relative positions |j - i| beyond this fall into two overflow bins
    top_k: int = 0  # examples kept per statistic, method and layer (`TopExamples`; 0: none)
    # Agreement (Spearman) from every row (1, exact), or about one row in `agreement_every`, drawn by a
    # hash of (row, layer index, the example's token ids): `sampled_rows`. Ranks are most of the cost.
    agreement_every: int = 1

    def __post_init__(self) -> None:
        if self.agreement_every < 1:
            raise ValueError(f"agreement_every must be 1 (every row) or more, not {self.agreement_every}")

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Return every unordered method pair, in method order."""
        return [(a, b) for k, a in enumerate(self.methods) for b in self.methods[k + 1 :]]

    @property
    def num_offsets(self) -> int:
        return 2 * self.max_offset + 3  # -(D+1) (or less), -D..D, D+1 (or more)

    def offsets(self) -> np.ndarray:
        """Return the offset bin labels; the first and last bins are the overflow bins."""
        d = self.max_offset
        return np.arange(-d - 1, d + 2)

    def ranked_rows(self, n: int, seed) -> np.ndarray:
        """Return `[..., L, n]` bool: the rows whose ranks enter the agreement, for examples of `n` tokens whose
        token ids sum to `seed` (an int, or `[...]`); every row when `agreement_every` is 1."""
        if self.agreement_every == 1:
            return np.ones((*np.shape(seed), self.num_layers, n), dtype=bool)
        seed = np.asarray(seed, dtype=np.int64).astype(np.uint64)[..., None, None]
        return sampled_rows(np.arange(n, dtype=np.uint64), np.arange(self.num_layers, dtype=np.uint64)[:, None],
                            seed, self.agreement_every)  # fmt: skip

    def bucket_of(self, n: int) -> int:
        return int(np.searchsorted(self.bucket_edges, n, side="right") - 1)

    def bucket_labels(self) -> list[str]:
        edges = self.bucket_edges
        return [f"{a}-{b - 1}" for a, b in itertools.pairwise(edges)] + [f"{edges[-1]}+"]


# Names of the per-(method, bucket, layer) sums: shape `[M, B, L]`. Every mass is summed over the
# rows that count (`vzcore.statistics.rows`); scored rows with a single valid entry are counted apart.
ROW_SUMS = (
    "rows",  # the rows that count: scored, at least two valid entries (the denominator of every mass)
    "single_rows",  # scored rows with one valid entry, left out of every mass statistic
    "self_mass",  # diagonal: mass a token keeps
    "context_mass",  # off-diagonal: mass mixed in from context
    "special_mass",  # mass on special source tokens ([CLS], [SEP], BOS, EOS, PAD)
    "punct_mass",  # mass on punctuation source tokens
    "zero_rows",  # scored rows whose entries are all zero
    "entropy_sum",  # sum of normalised row entropies
    "entropy_rows",  # rows counted in entropy_sum (>= 2 valid entries, nonzero)
)


def _new_sums(spec: StatsSpec) -> dict[str, np.ndarray]:
    m, b, layers = len(spec.methods), len(spec.bucket_edges), spec.num_layers
    sums: dict[str, np.ndarray] = {name: np.zeros((m, b, layers)) for name in ROW_SUMS}
    sums["offset_mass"] = np.zeros((m, b, layers, spec.num_offsets))
    sums["offset_count"] = np.zeros((m, b, layers, spec.num_offsets))
    sums["agree_sum"] = np.zeros((len(spec.pairs), b, layers))
    sums["agree_count"] = np.zeros((len(spec.pairs), b, layers))
    sums["examples"] = np.zeros(b)
    sums["tokens"] = np.zeros(b)
    return sums


# Per token type: `[4, M, L, U]` for the U type ids seen.
TYPE_SUMS = ("kept_sum", "kept_count", "given_sum", "given_count")


@dataclass
class PartialStats:
    """Sums over some examples; `merge` adds another partial's sums. Memory is bounded by the vocabulary."""

    spec: StatsSpec
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    type_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # `[U]` sorted
    type_sums: np.ndarray = field(default_factory=lambda: np.zeros((len(TYPE_SUMS), 0, 0, 0)))  # `[4, M, L, U]`
    status_counts: dict[str, int] = field(default_factory=dict)  # scored / failed / skipped
    type_tokens: dict[int, str] = field(default_factory=dict)  # token string of each seen type id
    top: TopExamples | None = None  # the highest examples (with `spec.top_k`; blocks with ids only)

    def __post_init__(self) -> None:
        if self.top is None and self.spec.top_k:
            self.top = TopExamples(len(self.spec.methods), self.spec.num_layers, self.spec.top_k)
        if not self.sums:
            self.sums = _new_sums(self.spec)
        if not self.type_sums.size and not len(self.type_ids):  # shaped by the spec, holding no type yet
            self.type_sums = np.zeros((len(TYPE_SUMS), len(self.spec.methods), self.spec.num_layers, 0))

    # ---- accumulation -------------------------------------------------------------------------
    def count_status(self, name: str, k: int = 1) -> None:
        self.status_counts[name] = self.status_counts.get(name, 0) + k

    def add_example(
        self,
        maps: dict[str, np.ndarray],
        token_ids: np.ndarray,
        special: np.ndarray,
        punct: np.ndarray,
        tokens: list[str] | None = None,
    ) -> None:
        """Add one example: `maps[method]` is `[L, n, n]` (NaN rows unscored), masks are `[n]` bool."""
        spec = self.spec
        n = len(token_ids)
        b = spec.bucket_of(n)
        self.sums["examples"][b] += 1
        self.sums["tokens"][b] += n
        valid = valid_entries(n, n, spec.causal)  # `[n, n]`
        k_valid = valid.sum(1)  # `[n]` valid entries per row
        offset_bin = np.clip(np.arange(n)[None, :] - np.arange(n)[:, None], -spec.max_offset - 1, spec.max_offset + 1)
        offset_bin = (offset_bin + spec.max_offset + 1).ravel()  # `[n*n]` bin index of each entry
        ids = np.asarray(token_ids, dtype=np.int64)
        uniq, inv = np.unique(ids, return_inverse=True)
        self._ensure_types(uniq, tokens, ids)
        where = np.searchsorted(self.type_ids, uniq)[inv]  # `[n]` type column of each token
        clean: dict[str, np.ndarray] = {}
        scored: dict[str, np.ndarray] = {}
        for mi, method in enumerate(spec.methods):
            x = np.asarray(maps[method], dtype=np.float64)  # `[L, n, n]`
            s = scored_rows(x)  # `[L, n]`
            x = np.where(np.isnan(x) | ~valid, 0.0, x)
            clean[method], scored[method] = x, s
            self._add_rows(mi, b, x, s, valid, k_valid, special, punct, offset_bin)
            self._add_types(mi, x, s, valid, where)
        ranks = {m: _centred_ranks(clean[m], valid, k_valid) for m in spec.methods if spec.pairs}
        for pi, (a, c) in enumerate(spec.pairs):
            per_row, ok = _row_spearman(
                ranks[a], ranks[c], scored[a] & scored[c] & spec.ranked_rows(n, int(ids.sum())), k_valid
            )
            has = ok.any(1)  # `[L]` sentences with at least one comparable row
            mean = np.where(has, (per_row * ok).sum(1) / np.maximum(ok.sum(1), 1), 0.0)
            self.sums["agree_sum"][pi, b] += mean
            self.sums["agree_count"][pi, b] += has

    def _add_rows(self, mi, b, x, s, valid, k_valid, special, punct, offset_bin) -> None:
        sums = self.sums
        diag = np.diagonal(x, axis1=1, axis2=2)  # `[L, n]`
        row_sum = x.sum(-1)
        keep = counted_rows(s, k_valid)
        sums["single_rows"][mi, b] += (s & ~keep).sum(1)
        sums["zero_rows"][mi, b] += (s & (row_sum == 0)).sum(1)
        s = keep  # from here on: the rows that count
        sums["rows"][mi, b] += s.sum(1)
        sums["self_mass"][mi, b] += (diag * s).sum(1)
        sums["context_mass"][mi, b] += ((row_sum - diag) * s).sum(1)
        sums["special_mass"][mi, b] += (x[:, :, special].sum(-1) * s).sum(1)
        sums["punct_mass"][mi, b] += (x[:, :, punct].sum(-1) * s).sum(1)
        ent_ok = s & (row_sum > 0)  # `[L, n]`
        p = x / np.where(row_sum > 0, row_sum, 1.0)[..., None]
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        entropy = -plogp.sum(-1) / np.log(np.maximum(k_valid, 2))[None, :]
        sums["entropy_sum"][mi, b] += np.where(ent_ok, entropy, 0.0).sum(1)
        sums["entropy_rows"][mi, b] += ent_ok.sum(1)
        nb = self.spec.num_offsets
        entry_ok = (s[:, :, None] & valid[None]).reshape(s.shape[0], -1)  # `[L, n*n]`
        flat = (x * s[:, :, None]).reshape(x.shape[0], -1)
        for layer in range(x.shape[0]):
            sums["offset_mass"][mi, b, layer] += np.bincount(offset_bin, weights=flat[layer], minlength=nb)
            sums["offset_count"][mi, b, layer] += np.bincount(offset_bin, weights=entry_ok[layer], minlength=nb)

    def _add_types(self, mi, x, s, valid, where) -> None:
        n = len(where)
        s = counted_rows(s, valid.sum(1))
        diag = np.diagonal(x, axis1=1, axis2=2)  # `[L, n]`
        others = s[:, :, None] & valid[None] & ~np.eye(n, dtype=bool)[None]  # `[L, i, j]`: row i takes from j
        given_rows = others.sum(1)  # `[L, n]` other scored rows that can take from source j
        given_mean = np.where(given_rows > 0, (x * others).sum(1) / np.maximum(given_rows, 1), 0.0)
        u = len(self.type_ids)
        for layer in range(x.shape[0]):
            for ti, weights in enumerate((diag[layer] * s[layer], s[layer], given_mean[layer], given_rows[layer] > 0)):
                self.type_sums[ti, mi, layer] += np.bincount(where, weights=weights.astype(np.float64), minlength=u)

    def _ensure_types(self, uniq: np.ndarray, tokens: list[str] | None, ids: np.ndarray) -> None:
        new = np.setdiff1d(uniq, self.type_ids)
        if len(new):
            self._grow(new)
        if tokens is not None:
            for tid, tok in zip(ids.tolist(), tokens, strict=True):
                self.type_tokens.setdefault(tid, tok)

    def _grow(self, new_ids: np.ndarray) -> None:
        ids = np.union1d(self.type_ids, new_ids)
        grown = np.zeros((*self.type_sums.shape[:3], len(ids)))
        grown[..., np.searchsorted(ids, self.type_ids)] = self.type_sums
        self.type_ids, self.type_sums = ids, grown

    # ---- merging ------------------------------------------------------------------------------
    def merge(self, other: PartialStats) -> PartialStats:
        """Add `other`'s sums into this partial (in place) and return it."""
        if other.spec != self.spec:
            raise ValueError(f"cannot merge statistics of different specs: {self.spec} vs {other.spec}")
        for name, value in other.sums.items():
            self.sums[name] += value
        if len(other.type_ids):
            self._grow(np.setdiff1d(other.type_ids, self.type_ids))
            self.type_sums[..., np.searchsorted(self.type_ids, other.type_ids)] += other.type_sums
        for name, k in other.status_counts.items():
            self.count_status(name, k)
        for tid, tok in other.type_tokens.items():
            self.type_tokens.setdefault(tid, tok)
        if self.top is not None and other.top is not None:
            self.top.merge(other.top)
        return self


def _centred_ranks(x: np.ndarray, valid: np.ndarray, k_valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return `([L, n, n] ranks minus their row mean, 0 off the valid entries; [L, n] sum of squares)`.

    Invalid entries are set to +inf before ranking, so they take the top ranks and the valid entries
    get exactly their ranks among themselves (ties averaged, as `scipy.stats.spearmanr`).
    """
    from scipy.stats import rankdata

    mask = np.broadcast_to(valid[None], x.shape)
    r = rankdata(np.where(mask, x, np.inf), axis=-1)
    k = k_valid[None, :, None].astype(np.float64)
    c = np.where(mask, r - (r * mask).sum(-1, keepdims=True) / k, 0.0)
    return c, (c * c).sum(-1)


def _row_spearman(ra, rb, scored, k_valid) -> tuple[np.ndarray, np.ndarray]:
    """Return `([L, n] Spearman per row, [L, n] whether the row counts)` from two `_centred_ranks`.

    Rows need >= 3 valid entries and a non-constant row in both methods.
    """
    (ca, va), (cb, vb) = ra, rb
    ok = scored & (k_valid[None, :] >= 3) & (va > 0) & (vb > 0)
    r = np.where(ok, (ca * cb).sum(-1) / np.sqrt(np.where(ok, va * vb, 1.0)), 0.0)
    return r, ok
