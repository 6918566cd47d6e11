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
        shape = (len(TOP_STATISTICS), self.num_methods, self.num_layers, self.k)
        self.value = np.full(shape, -np.inf)
        self.example_id = np.full(shape, -1, dtype=np.int64)
        self.length = np.zeros(shape, dtype=np.int64)

    def add(self, method: int, example_id: np.ndarray, length: np.ndarray, values: np.ndarray) -> None:
        """Offer `E` examples of one method: `values` `[S, E, L]` (NaN: the example has no value there)."""
        num_e = len(example_id)
        if not num_e:
            return
        value = np.moveaxis(np.where(np.isnan(values), -np.inf, values), 1, -1)  # `[S, L, E]`
        ids = np.broadcast_to(np.asarray(example_id, dtype=np.int64), value.shape)
        lengths = np.broadcast_to(np.asarray(length, dtype=np.int64), value.shape)
        v, i, n = self._best(
            np.concatenate([self.value[:, method], value], -1),
            np.concatenate([self.example_id[:, method], ids], -1),
            np.concatenate([self.length[:, method], lengths], -1),
        )
        self.value[:, method], self.example_id[:, method], self.length[:, method] = v, i, n

    def merge(self, other: TopExamples) -> TopExamples:
        """Keep the best of both (in place) and return self."""
        if (other.num_methods, other.num_layers, other.k) != (self.num_methods, self.num_layers, self.k):
            raise ValueError("cannot merge top examples of different shapes")
        self.value, self.example_id, self.length = self._best(
            np.concatenate([self.value, other.value], -1),
            np.concatenate([self.example_id, other.example_id], -1),
            np.concatenate([self.length, other.length], -1),
        )
        return self

    def _best(self, value: np.ndarray, ids: np.ndarray, length: np.ndarray):
        """The first `k` along the last axis by value (highest first), then id (lowest first); a
        padding entry (id -1, value -inf) sorts after every real one."""
        order = np.lexsort((np.where(ids < 0, np.iinfo(np.int64).max, ids), -value), axis=-1)[..., : self.k]
        pick = lambda a: np.take_along_axis(a, order, -1)  # noqa: E731
        return pick(value), pick(ids), pick(length)

    def rows(self, methods: list[str], layers: list[int]) -> list[dict]:
        """The kept examples as table rows: statistic, method, layer, rank (0: highest), example_id, value, length."""
        out = []
        for si, stat in enumerate(TOP_STATISTICS):
            for mi, method in enumerate(methods):
                for li, layer in enumerate(layers):
                    kept = (self.example_id[si, mi, li] >= 0) & np.isfinite(self.value[si, mi, li])
                    for rank, (eid, v, n) in enumerate(
                        zip(
                            self.example_id[si, mi, li][kept].tolist(),
                            self.value[si, mi, li][kept].tolist(),
                            self.length[si, mi, li][kept].tolist(),
                            strict=True,
                        )
                    ):
                        out.append(
                            {
                                "statistic": stat,
                                "method": method,
                                "layer": layer,
                                "rank": rank,
                                "example_id": eid,
                                "value": v,
                                "length": n,
                            }
                        )
        return out
