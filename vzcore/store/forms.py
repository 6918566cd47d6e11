"""Reduced forms of stored maps (layout v4, docs/store-layout.md): top-k rows, targeted rows, words.

A dense example stores every valid entry of every row it holds (v3's packing, `layout.pack_maps`).
A top-k example stores, per row, the `k` largest sources at or above `threshold`, as CSR arrays:
a count per row (row offsets are their running sum), the kept sources' indices (ascending within a
row) and values, and the row's *kept mass*: the sum of the kept values as stored. A row of a
row-normalised method sums to 1, so `1 - mass` is what the row lost. `auto` stores an example
dense up to `AUTO_DENSE_MAX_TOKENS` tokens and top-k above. `words` stores every example's maps
pooled to its words exactly as `vzcore.ScoreResult.word_level` pools them, dense over the words
(`vzcore.store.words`).

Which rows an example holds (all of them, or only its target rows) is recorded per example
(`rows`); a row not held reads back as NaN, exactly as `vzcore.score(targets=...)` leaves it.

Pure numpy: the writer, the reader and `vz verify` share these definitions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vzcore.maps import valid_entries

__all__ = [
    "AUTO_DENSE_MAX_TOKENS",
    "DEFAULT_TOP_K",
    "DEFAULT_TOP_K_THRESHOLD",
    "FORM_DENSE",
    "FORM_NAMES",
    "FORM_TOP_K",
    "FORM_WORDS",
    "STORE_KINDS",
    "TARGET_KINDS",
    "StoreForm",
    "TopKRows",
    "held_positions",
    "parse_store_form",
    "top_k_dense",
    "top_k_rows",
]

# Per-example form codes (the part array `form`).
FORM_DENSE = 0
FORM_TOP_K = 1
FORM_WORDS = 2  # dense over the example's words (`[L, W, W]`), with its word units (`vzcore.store.words`)
FORM_NAMES = {FORM_DENSE: "dense", FORM_TOP_K: "top-k", FORM_WORDS: "words"}
STORE_KINDS = ("dense", "top-k", "auto", "words")

AUTO_DENSE_MAX_TOKENS = 1024  # `auto`: examples up to this many tokens are stored dense, longer ones top-k
# HeadVis and Neuronpedia keep the 8 largest sources of a row, dropping those below 0.005.
DEFAULT_TOP_K = 8
DEFAULT_TOP_K_THRESHOLD = 0.005

# Which rows a store holds (root attribute `targets`; v3 stores and `all` hold every row).
TARGET_KINDS = ("all", "last", "mask", "column")


@dataclass(frozen=True)
class StoreForm:
    """How a run stores maps: `dense`, `top-k` (k, threshold), `auto` (dense up to `dense_max_tokens`),
    or `words` (every example pooled to its words)."""

    kind: str = "dense"
    k: int = DEFAULT_TOP_K
    threshold: float = DEFAULT_TOP_K_THRESHOLD
    dense_max_tokens: int = AUTO_DENSE_MAX_TOKENS

    def __post_init__(self) -> None:
        if self.kind not in STORE_KINDS:
            raise ValueError(f"unknown store form {self.kind!r}; choose from: dense, top-k=K,threshold=T, auto, words")
        if self.k < 1:
            raise ValueError(f"top-k needs k >= 1, not {self.k}")
        if not np.isfinite(self.threshold) or self.threshold < 0:
            raise ValueError(f"top-k needs a threshold >= 0, not {self.threshold}")
        if self.threshold > 1:  # every stored row is normalised to sum to 1: no entry could reach it
            raise ValueError(
                f"top-k threshold {self.threshold:g} is above 1: rows are normalised to sum to 1, so it would keep"
                " nothing; give a fraction of a row's mass (e.g. threshold=0.005)"
            )

    @property
    def reduced(self) -> bool:
        """Whether any example may be stored in a reduced form (the store is then layout v4)."""
        return self.kind != "dense"

    def form_of(self, n: int) -> int:
        """Return the form code an example of `n` tokens is stored in."""
        if self.kind == "words":
            return FORM_WORDS
        if self.kind == "dense" or (self.kind == "auto" and n <= self.dense_max_tokens):
            return FORM_DENSE
        return FORM_TOP_K

    @property
    def top_k(self) -> bool:
        """Whether any example may be stored top-k (the part then has `topk/` arrays)."""
        return self.kind in ("top-k", "auto")

    @property
    def words(self) -> bool:
        """Whether every example is stored pooled to its words."""
        return self.kind == "words"

    def describe(self) -> str:
        if self.kind == "words":
            return "word-pooled maps (sum over a source word's tokens, mean over a target word's)"
        top = f"top-{self.k} sources per row at or above {self.threshold:g}"
        if self.kind == "auto":
            return f"dense up to {self.dense_max_tokens} tokens, {top} above"
        return top if self.kind == "top-k" else "dense"

    def to_attr(self) -> dict:
        """The root attribute `store_form` (JSON)."""
        if self.kind in ("dense", "words"):
            return {"kind": self.kind}
        attr: dict = {"kind": self.kind, "k": self.k, "threshold": self.threshold}
        if self.kind == "auto":
            attr["dense_max_tokens"] = self.dense_max_tokens
        return attr

    @classmethod
    def from_attr(cls, attr: dict | None) -> StoreForm:
        """Parse the root attribute (None: dense); `ValueError` for a form this version does not know."""
        if attr is None:
            return cls()
        attr = dict(attr)
        kind = attr.pop("kind", None)
        if kind not in STORE_KINDS or set(attr) - {"k", "threshold", "dense_max_tokens"}:
            raise ValueError(f"unknown store form {dict(attr, kind=kind)}; this vzcore reads {', '.join(STORE_KINDS)}")
        return cls(kind, **attr)


def parse_store_form(text: str) -> StoreForm:
    """Parse `--store`: `dense`, `auto`, `words`, or `top-k=K,threshold=T` (either part may be left out)."""
    text = text.strip()
    if text in ("dense", "auto", "words"):
        return StoreForm(text)
    if text.split(",")[0].partition("=")[0].strip() == "words":  # a word map is dense over its words: no options
        raise ValueError(
            f"--store {text!r}: words takes no options and combines with no other form (a word map is stored "
            "dense over its words); use --store words, or top-k=K,threshold=T on token maps"
        )
    if not text.startswith("top-k"):
        raise ValueError(f"--store must be dense, auto, words or top-k=K,threshold=T; not {text!r}")
    k, threshold = DEFAULT_TOP_K, DEFAULT_TOP_K_THRESHOLD
    for item in filter(None, text.removeprefix("top-k").split(",")):
        key, _, value = item.partition("=")
        key = key.strip() or "top-k"
        try:
            if key == "top-k":
                k = int(value)
            elif key == "threshold":
                threshold = float(value)
            else:
                raise ValueError(f"unknown key {key!r}")
        except ValueError as err:
            raise ValueError(f"--store {text!r}: {err} (want top-k=K,threshold=T)") from None
    return StoreForm("top-k", k, threshold)


def held_positions(rows: np.ndarray, n: int, causal: bool) -> np.ndarray:
    """Return where the packed values of the held `rows` sit in one map flattened row-major: their
    valid entries, row after row (the v3 packing restricted to those rows)."""
    valid = valid_entries(n, n, causal)
    mask = np.zeros((n, n), dtype=bool)
    mask[rows] = valid[rows]
    return np.flatnonzero(mask)


@dataclass(frozen=True)
class TopKRows:
    """One example's top-k rows of one method, rows in (layer, held row) order."""

    count: np.ndarray  # `[R]` int32 kept entries per row
    source: np.ndarray  # `[N]` source index of each kept entry, ascending within its row
    value: np.ndarray  # `[N]` kept values, in the store's dtype
    mass: np.ndarray  # `[R]` float32: the sum of the row's kept values (NaN for a row that was not scored)


def top_k_rows(maps: np.ndarray, rows: np.ndarray, k: int, threshold: float, causal: bool, dtype: str) -> TopKRows:
    """Return the top-k form of `maps` `[L, n, n]` restricted to `rows` `[r]`.

    Per row: the valid sources (causal: `j <= i`) whose value is at or above `threshold`, the `k`
    largest of them (ties: the lower source first), kept in source order. Values are cast to
    `dtype` before the mass is summed, so the mass is exactly the sum of what is stored (to float32
    rounding). A row holding NaN (its method failed there) keeps nothing, mass NaN.

    One layer at a time: the selection's temporaries are ~10× the maps they read, so a long text's
    whole `[L, n, n]` at once would need ten times its maps in memory (n = 4096, 32 layers: ~20 GiB).
    """
    parts = [_top_k_layer(maps[layer : layer + 1], rows, k, threshold, causal, dtype) for layer in range(len(maps))]
    return TopKRows(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("count", "source", "value", "mass")))


def _top_k_layer(maps: np.ndarray, rows: np.ndarray, k: int, threshold: float, causal: bool, dtype: str) -> TopKRows:
    """`top_k_rows` of one layer's maps `[1, n, n]`."""
    n = maps.shape[-1]
    x = np.asarray(maps[:, rows, :], dtype=np.float32)  # `[L, r, n]`
    stored = x.astype(dtype).astype(np.float64)
    bad = np.asarray(np.isnan(stored).any(-1))  # `[L, r]`
    ok = valid_entries(n, n, causal)[rows][None] & (stored >= threshold) & ~bad[..., None]
    # The k largest: a stable sort of -value keeps the lower source first among ties.
    key = np.where(ok, -stored, np.inf)
    order = np.argsort(key, axis=-1, kind="stable")[..., :k]
    take = np.take_along_axis(ok, order, -1)
    keep = np.zeros_like(ok)
    np.put_along_axis(keep, order, take, -1)
    count = keep.sum(-1).reshape(-1).astype(np.int32)
    flat_keep = keep.reshape(-1, n)
    source = np.nonzero(flat_keep)[1]
    value = x.reshape(-1, n)[flat_keep].astype(dtype)
    mass = np.where(keep, stored, 0.0).sum(-1).reshape(-1)
    mass = np.where(bad.reshape(-1), np.nan, mass).astype(np.float32)
    index = np.int16 if n <= np.iinfo(np.int16).max else np.int32
    return TopKRows(count, source.astype(index), value, mass)


def top_k_dense(
    count: np.ndarray, source: np.ndarray, value: np.ndarray, mass: np.ndarray, rows: np.ndarray, n: int, layers: int
) -> np.ndarray:
    """Return `[layers, n, n]` float32 from one example's top-k rows: kept entries, 0 elsewhere in a
    held row, NaN in rows not held (and in a held row whose mass is NaN: not scored)."""
    out = np.full((layers, n, n), np.nan, dtype=np.float32)
    held = np.zeros((layers * len(rows), n), dtype=np.float32)
    which = np.repeat(np.arange(len(count)), count)
    held[which, source.astype(np.int64)] = value
    held[np.isnan(mass)] = np.nan
    out[:, rows, :] = held.reshape(layers, len(rows), n)
    return out
