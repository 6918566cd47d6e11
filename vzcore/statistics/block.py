"""The statistics of `vzcore.statistics.partial` for a whole block of examples at once (the fast path).

`PartialStats.add_example` is the reference: one example at a time, in the map layout readers
return. Here a block of a part is taken as stored (flat values and offsets). With numba installed
and float16 or float32 maps, one compiled pass adds it all (`vzcore.statistics.kernel`). Otherwise
(the NumPy path below) its examples are grouped by length, and each group of `E` examples of `n`
tokens is one `[E, L, n, n]` array, so that every statistic is a handful of numpy calls per group
instead of per example. Either way, sums come out equal to the reference's up to float64
rounding; per-row Spearman correlations come out equal exactly (ranks are half-integers, their
products and sums exact in float64).

Spearman ranks avoid `argsort`: each row's values (as sortable unsigned ints) and positions are
packed into one integer and sorted (SIMD sorts of plain ints are several times faster than an
argsort); a second sort by position brings the tie-averaged ranks back to their columns.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache

import numpy as np

from vzcore.maps import valid_entries
from vzcore.statistics.kernel import COUNT_MAX, float16_tables, kernel_for
from vzcore.statistics.partial import ROW_SUMS, PartialStats, _centred_ranks
from vzcore.statistics.rows import counted_rows, row_masses, scored_rows
from vzcore.store.layout import packed_positions

__all__ = ["ExampleBlock", "add_block"]


@dataclass(frozen=True)
class ExampleBlock:
    """Scored examples of one part, as stored: flat arrays and the offsets of each example in them."""

    length: np.ndarray  # `[E]` tokens per example
    token_ids: np.ndarray  # `[T]` the examples' token ids, one example after another (`length` says where)
    values: dict[str, list[np.ndarray]]  # method -> E flat arrays `[packed_size(n, n, L, causal)]`
    special: np.ndarray  # `[T]` bool: special source tokens
    punct: np.ndarray  # `[T]` bool: punctuation (and not special) source tokens
    example_id: np.ndarray | None = None  # `[E]` ids: needed to keep the top examples (`PartialStats.top`)
    # `[E]` each example's tokens, the length the top examples report, where `length` counts other
    # units (a words part's words); None: `length`
    tokens: np.ndarray | None = None

    def shown_lengths(self) -> np.ndarray:
        """`[E]` the length each example's top-examples entry reports: its tokens."""
        return np.asarray(self.length if self.tokens is None else self.tokens, dtype=np.int64)


def add_block(stats: PartialStats, block: ExampleBlock, type_tokens: dict[int, str]) -> None:
    """Add every example of `block` to `stats`; `type_tokens` gives the token string of each id in the block."""
    if not len(block.length):
        return
    spec = stats.spec
    num_layers, methods = spec.num_layers, spec.methods
    ids = np.asarray(block.token_ids, dtype=np.int64)
    uniq, inv = np.unique(ids, return_inverse=True)
    stats._ensure_types(uniq, None, ids)
    for tid in uniq.tolist():
        if tid not in stats.type_tokens:
            stats.type_tokens[tid] = type_tokens[tid]
    # Per-token sums of the block, `[4, M, L, U_block]`, added to the partial's columns at the end.
    types = np.zeros((4, len(methods), num_layers, len(uniq)))
    kernel = kernel_for(sum(len(v) for v in block.values[methods[0]]) * len(methods))
    # The kernel reads every method's values as one dtype; methods added later may be stored in another.
    dtypes = {v.dtype for m in methods for v in block.values[m]}
    if kernel is not None and len(dtypes) == 1 and dtypes <= {np.dtype(np.float16), np.dtype(np.float32)}:
        _add_compiled(kernel, stats, block, inv, types, COUNT_MAX)
    else:
        _add_groups(stats, block, inv, types)
    stats.type_sums[..., np.searchsorted(stats.type_ids, uniq)] += types


def _add_compiled(
    kernel, stats: PartialStats, block: ExampleBlock, inv: np.ndarray, types: np.ndarray, count_max: int
) -> None:
    """Add the block in one call of the compiled kernel (`vzcore.statistics.kernel`), reading the values as stored."""
    spec, sums = stats.spec, stats.sums
    methods = spec.methods
    dtype = block.values[methods[0]][0].dtype
    sizes = np.asarray([len(v) for v in block.values[methods[0]]], dtype=np.int64)
    half = np.uint16 if dtype == np.float16 else np.uint32
    bits = np.empty((len(methods), int(sizes.sum())), dtype=half)  # `[M, V]`: one copy, no widening
    for mi, m in enumerate(methods):
        np.concatenate([v.view(half) for v in block.values[m]], out=bits[mi])
    values, xlogx = float16_tables()
    length = np.asarray(block.length, dtype=np.int64)
    bucket = np.searchsorted(spec.bucket_edges, length, side="right") - 1
    np.add.at(sums["examples"], bucket, 1)
    np.add.at(sums["tokens"], bucket, length)
    rs = np.stack([sums[name] for name in ROW_SUMS])  # `[9, M, B, L]`
    sign = np.uint64(1 << (8 * np.dtype(half).itemsize - 1))
    key = np.int16 if half is np.uint16 else np.int32  # wide enough for a value's sign and magnitude
    n_max = int(length.max())
    own = np.zeros((len(length), 4, len(methods), spec.num_layers))  # each example's sums, for `stats.top`
    kernel(
        bits,
        bits.view(np.float32) if half is np.uint32 else np.zeros((1, 1), np.float32),
        values,
        xlogx,
        half is np.uint16,
        sign,
        length,
        np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64),
        np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64),
        bucket.astype(np.int64),
        inv.astype(np.int64),
        np.asarray(block.special, dtype=np.float64),
        np.asarray(block.punct, dtype=np.float64),
        spec.causal,
        spec.num_layers,
        spec.max_offset,
        spec.agreement_every,
        _id_sums(block),
        np.asarray([(methods.index(a), methods.index(c)) for a, c in spec.pairs], dtype=np.int64).reshape(-1, 2),
        rs,
        sums["offset_mass"],
        sums["offset_count"],
        sums["agree_sum"],
        sums["agree_count"],
        types,
        own,
        np.empty(-(-n_max // 32) * 32, dtype=key),  # room for a row padded to 32 columns
        np.empty(-(-n_max // 32) * 32, dtype=key),
        count_max,
    )
    for k, name in enumerate(ROW_SUMS):
        sums[name][...] = rs[k]
    if stats.top is not None and block.example_id is not None:
        count = own[:, 3]  # `[E, M, L]` counted rows
        with np.errstate(invalid="ignore", divide="ignore"):
            means = own[:, :3] / count[:, None]  # `[E, 3, M, L]`, as `rows.example_masses`
        means[np.broadcast_to(count[:, None] == 0, means.shape)] = np.nan  # no row counts: no value
        ids = np.asarray(block.example_id)
        for mi in range(len(methods)):
            stats.top.add(mi, ids, block.shown_lengths(), means[:, :, mi].transpose(1, 0, 2))


def _add_groups(stats: PartialStats, block: ExampleBlock, inv: np.ndarray, types: np.ndarray) -> None:
    """Add the block with NumPy, examples of one length at a time (without numba, or for other dtypes)."""
    methods = stats.spec.methods
    starts = np.concatenate([[0], np.cumsum(block.length)])
    for n in np.unique(block.length).tolist():
        members = np.flatnonzero(block.length == n)
        cols = np.stack([inv[starts[e] : starts[e] + n] for e in members])  # `[E, n]` block type column of each token
        group = {m: np.stack([block.values[m][e] for e in members]) for m in methods}  # `[E, L * P]`
        special = np.stack([block.special[starts[e] : starts[e] + n] for e in members])
        punct = np.stack([block.punct[starts[e] : starts[e] + n] for e in members])
        seeds = _id_sums(block)[members]
        ids_of = None if block.example_id is None else np.asarray(block.example_id)[members]
        _add_group(stats, types, n, group, cols, special, punct, seeds, ids_of, block.shown_lengths()[members])


def _id_sums(block: ExampleBlock) -> np.ndarray:
    """Return `[E]` the sum of each example's token ids (the seed of `StatsSpec.ranked_rows`)."""
    total = np.concatenate([[0], np.cumsum(np.asarray(block.token_ids, dtype=np.int64))])
    ends = np.cumsum(np.asarray(block.length, dtype=np.int64))
    return total[ends] - total[ends - np.asarray(block.length, dtype=np.int64)]


def _add_group(
    stats: PartialStats, types, n: int, group, cols, special, punct, seeds, example_ids=None, shown=None
) -> None:
    """Add `E` examples of `n` tokens: `group[method]` `[E, L * P]` as stored, masks `[E, n]`, id sums `[E]`;
    with `example_ids` `[E]`, offer each example's own statistics to `stats.top` too (with the lengths
    `shown` `[E]`, default `n`)."""
    spec, sums = stats.spec, stats.sums
    num_e, num_layers = len(cols), spec.num_layers
    b = spec.bucket_of(n)
    sums["examples"][b] += num_e
    sums["tokens"][b] += num_e * n
    t = _template(n, spec.causal, spec.max_offset)
    ones = np.ones((num_e, n, 1))
    weights = np.concatenate([ones, special[..., None], punct[..., None]], -1)  # `[E, n, 3]`
    ranks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    scored: dict[str, np.ndarray] = {}
    nb = spec.num_offsets
    layer_bins = (np.arange(num_layers)[:, None] * nb + t.offset_bin).ravel()  # `[L * n * n]`
    for mi, method in enumerate(spec.methods):
        raw = _dense(group[method].reshape(num_e * num_layers, -1), t).reshape(num_e, num_layers, n, n)
        x, masses, s, keep = _counted(raw, weights, t)
        scored[method] = s
        row_sum = masses[..., 0]
        sums["single_rows"][mi, b] += (s & ~keep).sum((0, 2))
        sums["zero_rows"][mi, b] += (s & (row_sum == 0)).sum((0, 2))
        if not keep.all():  # from here on every sum is over these rows: zero the others once
            x[~keep] = 0.0
            masses = np.where(keep[..., None], masses, 0.0)
            row_sum = masses[..., 0]
        diag = np.diagonal(x, axis1=2, axis2=3).copy()  # `[E, L, n]`
        sums["rows"][mi, b] += keep.sum((0, 2))
        sums["self_mass"][mi, b] += diag.sum((0, 2))
        sums["context_mass"][mi, b] += (row_sum - diag).sum((0, 2))
        sums["special_mass"][mi, b] += masses[..., 1].sum((0, 2))
        sums["punct_mass"][mi, b] += masses[..., 2].sum((0, 2))
        if stats.top is not None and example_ids is not None:
            lengths = np.full(len(example_ids), n) if shown is None else shown
            _offer_top(stats, mi, example_ids, lengths, diag, masses, keep)
        ent_ok = keep & (row_sum > 0)
        sums["entropy_sum"][mi, b] += _entropy(x, row_sum, ent_ok, t).sum((0, 2))
        sums["entropy_rows"][mi, b] += ent_ok.sum((0, 2))
        per_entry = x.sum(0).reshape(-1)  # `[L * n * n]`: summed over the group's examples first
        sums["offset_mass"][mi, b] += np.bincount(layer_bins, per_entry, num_layers * nb).reshape(num_layers, nb)
        counts = (keep.sum(0)[:, :, None] * t.valid).reshape(-1)
        sums["offset_count"][mi, b] += np.bincount(layer_bins, counts, num_layers * nb).reshape(num_layers, nb)
        _add_types(types, mi, x, diag, keep, cols, t)
        if spec.pairs and n >= 3:
            ranks[method] = _centred_ranks2(raw, t)
    for pi, (a, c) in enumerate(spec.pairs):
        if n < 3:
            break
        (ca, va), (cb, vb) = ranks[a], ranks[c]
        ok = scored[a] & scored[c] & (t.k_valid >= 3) & (va > 0) & (vb > 0) & spec.ranked_rows(n, seeds)  # `[E, L, n]`
        dot = np.einsum("elij,elij->eli", ca, cb)
        per_row = np.where(ok, dot / np.sqrt(np.where(ok, va * vb, 1.0)), 0.0)
        has = ok.any(-1)  # `[E, L]`
        mean = np.where(has, per_row.sum(-1) / np.maximum(ok.sum(-1), 1), 0.0)
        sums["agree_sum"][pi, b] += mean.sum(0)
        sums["agree_count"][pi, b] += has.sum(0)


def _counted(raw: np.ndarray, weights: np.ndarray, t: _Template):
    """Return `(x, masses, scored, keep)` of `[E, L, n, n]` maps: float64 maps (0 off the valid entries and
    for NaNs), their row masses on `weights`, the scored rows and the rows that count (zeroed here
    only by the caller)."""
    x = raw.astype(np.float64)
    masses = row_masses(x, weights)
    s = ~np.isnan(masses[..., 0])  # `[E, L, n]` scored rows (a NaN anywhere makes the row sum NaN)
    if not s.all():  # unscored rows: their NaNs count as 0, as in the reference
        s = scored_rows(x)
        x[np.isnan(x)] = 0.0
        masses = row_masses(x, weights)
    return x, masses, s, counted_rows(s, t.k_valid)


def _offer_top(stats: PartialStats, mi: int, example_ids, lengths, diag, masses, keep) -> None:
    """Offer each example's means over its rows that count (`rows.example_masses`), per layer, to `stats.top`."""
    assert stats.top is not None
    row_sum = np.where(keep, masses[..., 0], 0.0)
    diag = np.where(keep, diag, 0.0)
    count = keep.sum(2)  # `[E, L]`
    with np.errstate(invalid="ignore", divide="ignore"):
        own = np.stack([diag.sum(2), (row_sum - diag).sum(2), np.where(keep, masses[..., 1], 0.0).sum(2)]) / count
    own[:, count == 0] = np.nan  # no row counts: no value
    stats.top.add(mi, example_ids, lengths, own)


def _add_types(types, mi, x, diag, keep, cols, t) -> None:
    """Add kept and given mass per token type; `x` has zero rows where `keep` is false (its diagonal is zeroed here)."""
    num_e, num_layers, n = keep.shape
    x.reshape(num_e, num_layers, n * n)[:, :, :: n + 1] = 0.0  # what a source gives to *other* rows
    given = np.einsum("elij->elj", x)  # `[E, L, n]`: per source column j
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


def _entropy(x, row_sum, ent_ok, t) -> np.ndarray:
    """Return `[E, L, n]` normalised row entropies (0 where not `ent_ok`), as `-sum p log p` with `p = x / row_sum`.

    With no negative entry, from `T = sum x log x` and the row sum `S`: `-sum p log p = log S - T / S`
    (one log per entry, no division); else the reference's way.
    """
    if x.size and x.min() >= 0:
        buf = np.maximum(x, np.finfo(np.float64).tiny)  # log(tiny) is finite: 0 * log(tiny) = 0
        np.log(buf, out=buf)
        xlogx = np.einsum("elij,elij->eli", x, buf)
        total = np.where(ent_ok, row_sum, 1.0)
        h = np.where(ent_ok, np.log(total) - xlogx / total, 0.0)
    else:
        p = x / np.where(row_sum > 0, row_sum, 1.0)[..., None]
        h = np.where(ent_ok, -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(-1), 0.0)
    return h / np.log(np.maximum(t.k_valid, 2))


def _centred_ranks2(raw: np.ndarray, t: _Template) -> tuple[np.ndarray, np.ndarray]:
    """Return `(2 * centred ranks [E, L, n, n] as float64, their row sums of squares [E, L, n])`.

    Twice the ranks of `_centred_ranks` in `vzcore.statistics.partial` (ties averaged, 0 off the valid
    entries), as integers: the Spearman correlation of two rows is the same with either. Each row
    is sorted as one int per entry holding (value, place); after the tie runs get their shared
    rank, a second sort of (place, rank) brings the ranks back to their columns.
    """
    shape = raw.shape
    n = shape[-1]
    if raw.dtype.itemsize not in (2, 4) or n > 1 << 14 or sys.byteorder != "little":  # the reference's way
        maps = np.where(np.isnan(raw), 0.0, raw.astype(np.float64)).reshape(-1, n, n)
        c, ss = _centred_ranks(maps, t.valid, t.k_valid)
        return 2 * c.reshape(shape), 4 * ss.reshape(shape[:-1])
    half = np.uint16 if raw.dtype.itemsize == 2 else np.uint32
    key = np.empty((*raw.shape[:-1], n), dtype=np.uint32 if half is np.uint16 else np.uint64)  # `[E, L, n, n]`
    parts = key.view(half).reshape(*key.shape, 2)  # little-endian halves: [..., 0] low, [..., 1] high
    parts[..., 1] = _sortable(raw, half)
    parts[..., 0] = np.arange(n, dtype=half)
    if t.causal:  # entries above the diagonal sort last; they are not ranked
        parts[..., 1][..., ~t.valid] = np.iinfo(half).max
    rows = key.reshape(-1, n)
    rows.sort(axis=-1)
    value = parts.reshape(-1, n, 2)[..., 1]
    tie = value[:, 1:] == value[:, :-1]  # `[R, n - 1]`: sorted place p + 1 ties with p
    if t.causal:
        tie.reshape(-1, n, n - 1)[:] &= t.valid_sorted[:, 1:]
    where = np.flatnonzero(tie)
    # Second key: high half the column, low half the centred rank (offset to be unsigned).
    offset = 1 << 14
    parts[..., 1] = parts[..., 0]
    parts[..., 0] = t.c2_sorted + offset  # `2p + 1 - k` at sorted place p; 0 off the valid places
    if len(where):  # ties are rare: fix those places only; a run p0..p1 shares `p0 + p1 + 1 - k`
        r, p = np.divmod(where, n - 1)
        q = r * n + p + 1  # flat sorted places equal to the one before (never a row's first place)
        run_start = np.concatenate([[True], np.diff(q) != 1])
        run = np.cumsum(run_start) - 1
        first = q[run_start] - 1
        last = q[np.append(run_start[1:], True)]
        base = (first // n) * n
        k = t.k_valid[(first // n) % n] if t.causal else n
        share = ((first - base) + (last - base) + 1 - k + offset).astype(half)
        low = parts.reshape(-1, 2)[:, 0]
        low[q] = share[run]
        low[first] = share
    rows.sort(axis=-1)
    centred = np.subtract(parts[..., 0], float(offset))  # `[E, L, n, n]` float64, in column order
    return centred, np.einsum("elij,elij->eli", centred, centred)


def _sortable(raw: np.ndarray, utype) -> np.ndarray:
    """Return unsigned ints that order as the float values of `raw` (-0 as +0; NaNs above +inf)."""
    bits = raw.view(utype)
    sign = utype(1 << (8 * np.dtype(utype).itemsize - 1))
    if not bits.size or bits.max() < sign:  # no sign bit set: the bits already order as the values
        return bits
    bits = np.where(bits == sign, utype(0), bits)  # -0.0 ties with +0.0
    negative = (bits & sign) != 0
    return np.where(negative, ~bits, bits | sign)


@dataclass(frozen=True)
class _Template:
    """What depends only on the length (and the layout): masks and index arrays, built once per length."""

    causal: bool
    valid: np.ndarray  # `[n, n]` bool
    k_valid: np.ndarray  # `[n]` valid entries per row
    offset_bin: np.ndarray  # `[n * n]` offset bin of each entry
    unpack: np.ndarray | None  # `[n * n]` index into one map's packed values (plus one pad slot) when causal
    valid_sorted: np.ndarray  # `[n, n]` bool: sorted place p < k_valid[i]
    c2_sorted: np.ndarray  # `[n, n]` int: twice the centred rank at sorted place p of row i, without ties


@cache
def _template(n: int, causal: bool, max_offset: int) -> _Template:
    valid = valid_entries(n, n, causal)
    k_valid = valid.sum(1)
    offset_bin = np.clip(np.arange(n)[None, :] - np.arange(n)[:, None], -max_offset - 1, max_offset + 1)
    unpack = None
    if causal:
        where = packed_positions(n, n, causal)
        unpack = np.full(n * n, len(where), dtype=np.int64)  # the pad slot
        unpack[where] = np.arange(len(where))
    places = np.arange(n)[None, :]
    valid_sorted = places < k_valid[:, None]
    c2_sorted = np.where(valid_sorted, 2 * places + 1 - k_valid[:, None], 0)
    bins = (offset_bin + max_offset + 1).ravel()
    return _Template(causal, valid, k_valid, bins, unpack, valid_sorted, c2_sorted)


def _dense(packed: np.ndarray, t: _Template) -> np.ndarray:
    """Return `[maps, n * n]` from `[maps, P]` as stored: itself, or the lower triangle unpacked (0 above)."""
    if t.unpack is None:
        return packed
    padded = np.concatenate([packed, np.zeros((len(packed), 1), dtype=packed.dtype)], axis=1)
    return np.take(padded, t.unpack, axis=1)
