"""The statistics of `jobs.aggregate_stats` for a whole block of examples at once (the fast path).

`PartialStats.add_example` is the reference: one example at a time, in the map layout readers
return. Here a block of a part is taken as stored (flat values and offsets), its examples are
grouped by length, and each group of `E` examples of `n` tokens is one `[E, L, n, n]` array, so
that every statistic is a handful of numpy calls per group instead of per example. Sums come out
equal to the reference's up to float64 rounding; per-row Spearman correlations come out equal
exactly (ranks are half-integers, their products and sums exact in float64).

Spearman ranks avoid `argsort`: each row's values (as sortable unsigned ints) and positions are
packed into one integer and sorted (SIMD sorts of plain ints are several times faster than an
argsort); a second sort by position brings the tie-averaged ranks back to their columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from jobs.aggregate_stats import PartialStats

__all__ = ["ExampleBlock", "add_block"]


@dataclass(frozen=True)
class ExampleBlock:
    """Scored examples of one part, as stored: flat arrays and the offsets of each example in them."""

    length: np.ndarray  # `[E]` tokens per example
    token_ids: list[np.ndarray]  # E arrays `[n]`
    values: dict[str, list[np.ndarray]]  # method -> E flat arrays `[L * n * n]` (`[L * n(n+1)/2]` if causal)
    special: list[np.ndarray]  # E arrays `[n]` bool: special source tokens
    punct: list[np.ndarray]  # E arrays `[n]` bool: punctuation (and not special) source tokens


def add_block(stats: PartialStats, block: ExampleBlock, type_tokens: dict[int, str]) -> None:
    """Add every example of `block` to `stats`; `type_tokens` gives the token string of each id in the block."""
    if not len(block.length):
        return
    spec = stats.spec
    num_layers, methods = spec.num_layers, spec.methods
    ids = np.concatenate(block.token_ids).astype(np.int64)
    uniq, inv = np.unique(ids, return_inverse=True)
    stats._ensure_types(uniq, None, ids)
    for tid in uniq.tolist():
        if tid not in stats.type_tokens:
            stats.type_tokens[tid] = type_tokens[tid]
    # Per-token sums of the block, `[4, M, L, U_block]`, added to the partial's columns at the end.
    types = np.zeros((4, len(methods), num_layers, len(uniq)))
    starts = np.concatenate([[0], np.cumsum(block.length)])
    for n in np.unique(block.length).tolist():
        members = np.flatnonzero(block.length == n)
        cols = np.stack([inv[starts[e] : starts[e] + n] for e in members])  # `[E, n]` block type column of each token
        group = {m: np.stack([block.values[m][e] for e in members]) for m in methods}  # `[E, L * P]`
        special = np.stack([block.special[e] for e in members])
        punct = np.stack([block.punct[e] for e in members])
        _add_group(stats, types, n, group, cols, special, punct)
    stats.type_sums[..., np.searchsorted(stats.type_ids, uniq)] += types


def _add_group(stats: PartialStats, types, n: int, group, cols, special, punct) -> None:
    """Add `E` examples of `n` tokens: `group[method]` is `[E, L * P]` as stored, masks `[E, n]`."""
    spec, sums = stats.spec, stats.sums
    num_e, num_layers = len(cols), spec.num_layers
    b = spec.bucket_of(n)
    sums["examples"][b] += num_e
    sums["tokens"][b] += num_e * n
    t = _template(n, spec.causal, spec.max_offset)
    weights = np.stack([special, punct], -1).astype(np.float64)  # `[E, n, 2]`
    ranks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    scored: dict[str, np.ndarray] = {}
    for mi, method in enumerate(spec.methods):
        raw = _dense(group[method].reshape(num_e * num_layers, -1), t).reshape(num_e, num_layers, n, n)
        x = raw.astype(np.float64)  # `[E, L, n, n]`, 0 off the valid entries
        row_sum = x.sum(-1)  # `[E, L, n]`
        s = ~np.isnan(row_sum)
        nan = not s.all()
        if nan:  # unscored rows: their NaNs count as 0, as in the reference
            s = ~np.isnan(x).any(-1)
            x[np.isnan(x)] = 0.0
            row_sum = x.sum(-1)
        scored[method] = s
        single = s & (t.k_valid == 1)
        sums["single_rows"][mi, b] += single.sum((0, 2))
        sums["zero_rows"][mi, b] += (s & (row_sum == 0)).sum((0, 2))
        keep = s & ~single  # the rows that can mix
        if not keep.all():  # from here on every sum is over these rows: zero the others once
            x[~keep] = 0.0
            row_sum = np.where(keep, row_sum, 0.0)
        diag = np.diagonal(x, axis1=2, axis2=3)  # `[E, L, n]`
        sums["rows"][mi, b] += keep.sum((0, 2))
        sums["self_mass"][mi, b] += diag.sum((0, 2))
        sums["context_mass"][mi, b] += (row_sum - diag).sum((0, 2))
        masses = np.matmul(x.reshape(num_e, num_layers * n, n), weights).reshape(num_e, num_layers, n, 2)
        sums["special_mass"][mi, b] += masses[..., 0].sum((0, 2))
        sums["punct_mass"][mi, b] += masses[..., 1].sum((0, 2))
        ent_ok = keep & (row_sum > 0)
        sums["entropy_sum"][mi, b] += _entropy(x, raw, row_sum, ent_ok, t).sum((0, 2))
        sums["entropy_rows"][mi, b] += ent_ok.sum((0, 2))
        nb = spec.num_offsets
        layer_bins = (np.arange(num_layers)[:, None] * nb + t.offset_bin).ravel()  # `[L * n * n]`
        per_entry = x.sum(0).reshape(-1)  # `[L * n * n]`: summed over the group's examples first
        sums["offset_mass"][mi, b] += np.bincount(layer_bins, per_entry, num_layers * nb).reshape(num_layers, nb)
        counts = (keep.sum(0)[:, :, None] * t.valid).reshape(-1)
        sums["offset_count"][mi, b] += np.bincount(layer_bins, counts, num_layers * nb).reshape(num_layers, nb)
        _add_types(types, mi, x, diag.copy(), keep, cols, t)
        if spec.pairs and n >= 3:
            ranks[method] = _centred_ranks2(raw, t)
    for pi, (a, c) in enumerate(spec.pairs):
        if n < 3:
            break
        (ca, va), (cb, vb) = ranks[a], ranks[c]
        ok = scored[a] & scored[c] & (t.k_valid >= 3) & (va > 0) & (vb > 0)  # `[E, L, n]`
        dot = np.einsum("elij,elij->eli", ca, cb)
        per_row = np.where(ok, dot / np.sqrt(np.where(ok, va * vb, 1.0)), 0.0)
        has = ok.any(-1)  # `[E, L]`
        mean = np.where(has, per_row.sum(-1) / np.maximum(ok.sum(-1), 1), 0.0)
        sums["agree_sum"][pi, b] += mean.sum(0)
        sums["agree_count"][pi, b] += has.sum(0)


def _add_types(types, mi, x, diag, keep, cols, t) -> None:
    """Add kept and given mass per token type; `x` has zero rows where `keep` is false (its diagonal is zeroed here)."""
    num_e, num_layers, n = keep.shape
    x.reshape(num_e, num_layers, n * n)[:, :, :: n + 1] = 0.0  # what a source gives to *other* rows
    given = x.sum(2)  # `[E, L, n]`: per source column j
    kept_rows = keep.astype(np.int64)
    if t.causal:  # rows i > j take from j
        given_rows = np.cumsum(kept_rows[:, :, ::-1], -1)[:, :, ::-1] - kept_rows
    else:
        given_rows = kept_rows.sum(-1, keepdims=True) - kept_rows
    given_mean = np.where(given_rows > 0, given / np.maximum(given_rows, 1), 0.0)
    u = types.shape[-1]
    key = (np.arange(num_layers)[None, :, None] * u + cols[:, None, :]).reshape(-1)  # `[E * L * n]`
    for ti, w in enumerate((diag, keep, given_mean, given_rows > 0)):
        types[ti, mi] += np.bincount(key, w.reshape(-1).astype(np.float64), num_layers * u).reshape(num_layers, u)


def _entropy(x, raw, row_sum, ent_ok, t) -> np.ndarray:
    """Return `[E, L, n]` normalised row entropies (0 where not `ent_ok`), as `-sum p log p` with `p = x / row_sum`.

    With `T = sum x log x` over positive entries and `S` the row sum: `-sum p log p = log S - T / S`
    when no entry is negative (`T` from a table of the 65536 float16 values); else the direct way.
    """
    if raw.dtype == np.float16 and not (raw.view(np.uint16) & 0x8000).any():
        xlogx = _xlogx_float16()[raw.view(np.uint16)].sum(-1)  # rows of `x` zeroed above give 0 here too
        total = np.where(ent_ok, row_sum, 1.0)
        h = np.log(total) - np.where(ent_ok, xlogx, 0.0) / total
        h = np.where(ent_ok, h, 0.0)
    else:
        p = x / np.where(row_sum > 0, row_sum, 1.0)[..., None]
        h = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(-1)
        h = np.where(ent_ok, h, 0.0)
    return h / np.log(np.maximum(t.k_valid, 2))


@cache
def _xlogx_float16() -> np.ndarray:
    """Return `x log x` (float64) of every float16 bit pattern `x`; 0 for `x <= 0`, infinities and NaNs."""
    x = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float64)
    ok = np.isfinite(x) & (x > 0)
    out = np.zeros(1 << 16)
    out[ok] = x[ok] * np.log(x[ok])
    return out


def _centred_ranks2(raw: np.ndarray, t: _Template) -> tuple[np.ndarray, np.ndarray]:
    """Return `(2 * centred ranks [E, L, n, n] as float64, their row sums of squares [E, L, n])`.

    Twice the ranks of `_centred_ranks` in `jobs.aggregate_stats` (ties averaged, 0 off the valid
    entries), as integers: the Spearman correlation of two rows is the same with either.
    """
    shape = raw.shape
    n = shape[-1]
    rows = raw.reshape(-1, n)  # `[R, n]`, R = E * L * n
    reps = len(rows) // n  # maps: row r is row r % n of its map
    bits, width = _sortable(rows)
    key_type = np.uint32 if width == 16 and n <= 1 << 16 else np.uint64
    shift = key_type(16 if key_type is np.uint32 else 32)
    key = bits.astype(key_type) << shift
    key |= np.arange(n, dtype=key_type)
    if t.causal:  # the entries above the diagonal sort last, and are not ranked
        key.reshape(reps, n, n)[:, ~t.valid] |= key_type((1 << int(shift)) - 1) << shift
    key.sort(axis=-1)
    value = key >> shift
    # Twice the 1-based rank of sorted place p is 2p + 2; a run of ties at places p0..p1 shares p0 + p1 + 2.
    rank2 = np.tile(np.arange(2, 2 * n + 2, 2, dtype=np.int64), (len(rows), 1))
    tie = value[:, 1:] == value[:, :-1]
    if t.causal:
        tie &= np.tile(t.valid_sorted[:, 1:], (reps, 1))
    where = np.flatnonzero(tie)
    if len(where):  # few entries tie: fix those places only
        r, p = np.divmod(where, n - 1)
        q = r * n + p + 1  # flat sorted places equal to the one before (never a row's first place)
        run_start = np.concatenate([[True], np.diff(q) != 1])
        run = np.cumsum(run_start) - 1
        first = q[run_start] - 1
        last = q[np.append(run_start[1:], True)]
        base = (first // n) * n
        share = (first - base) + (last - base) + 2
        flat = rank2.reshape(-1)
        flat[q] = share[run]
        flat[first] = share
    if t.causal:
        c2 = np.where(np.tile(t.valid_sorted, (reps, 1)), rank2 - np.tile(t.k_valid + 1, reps)[:, None], 0)
    else:
        c2 = rank2 - (n + 1)
    ss = (c2 * c2).sum(-1)
    # Back to column order: sort (place, centred rank) pairs by place.
    pos = (key & key_type((1 << int(shift)) - 1)).astype(np.int64)
    if n < 1 << 14:
        back = (pos.astype(np.uint32) << np.uint32(16)) | (c2 + (1 << 15)).astype(np.uint32)
        back.sort(axis=-1)
        centred = (back & np.uint32(0xFFFF)).astype(np.float64) - (1 << 15)
    else:
        back = (pos << 32) | (c2 + (1 << 31))
        back.sort(axis=-1)
        centred = (back & ((1 << 32) - 1)).astype(np.float64) - (1 << 31)
    return centred.reshape(shape), ss.reshape(shape[:-1]).astype(np.float64)


def _sortable(rows: np.ndarray) -> tuple[np.ndarray, int]:
    """Return unsigned ints that order as the float values of `rows` (-0 as +0), and their bit width."""
    width = rows.dtype.itemsize * 8
    utype = {16: np.uint16, 32: np.uint32, 64: np.uint64}[width]
    bits = rows.view(utype)
    sign = utype(1 << (width - 1))
    negative = (bits & sign) != 0
    if not negative.any():
        return bits, width
    bits = np.where(bits == sign, utype(0), bits)  # -0.0 ties with +0.0
    negative = (bits & sign) != 0
    return np.where(negative, ~bits, bits | sign), width


@dataclass(frozen=True)
class _Template:
    """What depends only on the length (and the layout): masks and index arrays, built once per length."""

    causal: bool
    valid: np.ndarray  # `[n, n]` bool
    k_valid: np.ndarray  # `[n]` valid entries per row
    offset_bin: np.ndarray  # `[n * n]` offset bin of each entry
    unpack: np.ndarray | None  # `[n * n]` index into the packed row (plus one pad slot) when causal
    valid_sorted: np.ndarray  # `[n, n]` bool: sorted place p < k_valid[i]


@cache
def _template(n: int, causal: bool, max_offset: int) -> _Template:
    valid = np.tril(np.ones((n, n), dtype=bool)) if causal else np.ones((n, n), dtype=bool)
    k_valid = valid.sum(1)
    offset_bin = np.clip(np.arange(n)[None, :] - np.arange(n)[:, None], -max_offset - 1, max_offset + 1)
    unpack = None
    if causal:
        i, j = np.tril_indices(n)
        unpack = np.full(n * n, len(i), dtype=np.int64)  # the pad slot
        unpack[i * n + j] = np.arange(len(i))
    valid_sorted = np.arange(n)[None, :] < k_valid[:, None]
    return _Template(causal, valid, k_valid, (offset_bin + max_offset + 1).ravel(), unpack, valid_sorted)


def _dense(packed: np.ndarray, t: _Template) -> np.ndarray:
    """Return `[maps, n * n]` from `[maps, P]` as stored: itself, or the lower triangle unpacked (0 above)."""
    if t.unpack is None:
        return packed
    padded = np.concatenate([packed, np.zeros((len(packed), 1), dtype=packed.dtype)], axis=1)
    return np.take(padded, t.unpack, axis=1)
