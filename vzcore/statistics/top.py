"""The highest examples of each per-example statistic, kept while a corpus is aggregated: mergeable.

A per-example statistic (`vzcore.queries.top_examples`, `vz query top`) is a mean over an example's
rows that count (`vzcore.statistics.rows.example_masses`): the mass a row keeps (`self_mass`),
takes from context (`context_mass`) and puts on special tokens (`special_mass`). Ranking a corpus
by one of them reads every map of a method; the aggregator, which reads every map anyway, keeps
the `k` highest examples of each statistic, method and layer instead, so a viewer or a script can
answer top-k questions (for any k up to that) from a small table. Ties go to the lower id, as in
`top_examples`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["TOP_STATISTICS", "TopExamples"]

TOP_STATISTICS = ("self_mass", "context_mass", "special_mass")  # the columns of `example_masses`
PENDING_EXAMPLES = 1 << 16  # offers kept before they are ranked (a few MiB)


@dataclass
class TopExamples:
    """The `k` highest examples of each statistic, method and layer: `[S, M, L, k]` arrays, padded
    with `value = -inf`, `example_id = -1` where fewer examples were seen."""

    num_methods: int
    num_layers: int
    k: int
    value: np.ndarray = field(init=False)
    example_id: np.ndarray = field(init=False)
    length: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self._pending: list[tuple] = []  # offers not ranked yet: (method, ids, lengths, values)
        self._pending_size = 0
        shape = (len(TOP_STATISTICS), self.num_methods, self.num_layers, self.k)
        self.value = np.full(shape, -np.inf)
        self.example_id = np.full(shape, -1, dtype=np.int64)
        self.length = np.zeros(shape, dtype=np.int64)
        # Per method, how many leading entries are real (the rest padding): only those are ranked again,
        # so a part with fewer than `k` examples does not sort `k` padding entries at every step.
        self.filled = np.zeros(self.num_methods, dtype=np.int64)

    def add(self, method: int, example_id: np.ndarray, length: np.ndarray, values: np.ndarray) -> None:
        """Offer `E` examples of one method: `values` `[S, E, L]` (NaN: the example has no value there).

        Offers are kept as they come and ranked a batch at a time (a part offers a group of
        examples per length: ranking each would sort the kept `k` again every time)."""
        if not len(example_id):
            return
        self._pending.append((method, np.asarray(example_id, dtype=np.int64), np.asarray(length), values))
        self._pending_size += len(example_id)
        if self._pending_size >= PENDING_EXAMPLES:
            self.flush()

    def flush(self) -> None:
        """Rank the pending offers into the kept arrays, per method."""
        pending, self._pending, self._pending_size = self._pending, [], 0
        for method in sorted({m for m, *_ in pending}):
            mine = [p for p in pending if p[0] == method]
            value = np.concatenate([v for *_, v in mine], 1)  # `[S, E, L]`
            value = np.moveaxis(np.where(np.isnan(value), -np.inf, value), 1, -1)  # `[S, L, E]`
            ids = np.broadcast_to(np.concatenate([i for _, i, _, _ in mine]), value.shape)
            lengths = np.broadcast_to(np.concatenate([n for _, _, n, _ in mine]).astype(np.int64), value.shape)
            f = self.filled[method]
            v, i, n = self._best(
                np.concatenate([self.value[:, method, :, :f], value], -1),
                np.concatenate([self.example_id[:, method, :, :f], ids], -1),
                np.concatenate([self.length[:, method, :, :f], lengths], -1),
            )
            w = v.shape[-1]
            self.value[:, method, :, :w], self.example_id[:, method, :, :w], self.length[:, method, :, :w] = v, i, n
            self.filled[method] = w

    def merge(self, other: TopExamples) -> TopExamples:
        """Keep the best of both (in place) and return self."""
        if (other.num_methods, other.num_layers, other.k) != (self.num_methods, self.num_layers, self.k):
            raise ValueError("cannot merge top examples of different shapes")
        self.flush()
        other.flush()
        # Methods with fewer real entries than the most filled one bring padding along: it sorts last.
        fa, fb = int(self.filled.max(initial=0)), int(other.filled.max(initial=0))
        v, i, n = self._best(
            np.concatenate([self.value[..., :fa], other.value[..., :fb]], -1),
            np.concatenate([self.example_id[..., :fa], other.example_id[..., :fb]], -1),
            np.concatenate([self.length[..., :fa], other.length[..., :fb]], -1),
        )
        w = v.shape[-1]
        self.value[..., :w], self.example_id[..., :w], self.length[..., :w] = v, i, n
        self.filled = np.minimum(self.filled + other.filled, self.k)
        return self

    def _best(self, value: np.ndarray, ids: np.ndarray, length: np.ndarray):
        """The first `k` along the last axis by value (highest first), then id (lowest first); a
        padding entry (id -1, value -inf) sorts after every real one."""
        order = np.lexsort((np.where(ids < 0, np.iinfo(np.int64).max, ids), -value), axis=-1)[..., : self.k]
        pick = lambda a: np.take_along_axis(a, order, -1)  # noqa: E731
        return pick(value), pick(ids), pick(length)

    def columns(self, methods: list[str], layers: list[int]) -> dict[str, np.ndarray]:
        """The kept examples as table columns: statistic, method, layer, rank (0: highest),
        example_id, value, length; an example with no value is never kept."""
        self.flush()
        s_, m_, l_, r_ = (np.asarray(x) for x in np.indices(self.value.shape))
        kept = (self.example_id >= 0) & np.isfinite(self.value)
        return {
            "statistic": np.asarray(TOP_STATISTICS, dtype=object)[s_[kept]],
            "method": np.asarray(methods, dtype=object)[m_[kept]],
            "layer": np.asarray(layers, dtype=np.int64)[l_[kept]],
            "rank": r_[kept].astype(np.int64),
            "example_id": self.example_id[kept],
            "value": self.value[kept],
            "length": self.length[kept],
        }
