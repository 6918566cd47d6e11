"""Every per-row statistic of a block of examples in one compiled pass (numba): the fast path of
`vzcore.statistics.block` when numba is installed (the `jobs` extra) and the maps are float16 or
float32.

The NumPy path of `block` widens each group of examples to float64 `[E, L, n, n]` arrays and makes
a dozen passes over them (casts, masses, entropies, two sorts per row for the ranks), with Python
overhead per group of equal lengths. Here each stored row is read once, as stored (packed, raw
bits): its values are decoded into a buffer of one row per method, and every sum of
`PartialStats` is added from that buffer while it sits in the cache. Float16 values and their
`x log x` come from 65,536-entry tables, so the entropy costs no logarithm per entry.

Sums are the reference's (`PartialStats.add_example`) up to float64 rounding; Spearman ranks are
exact (twice the centred rank is an integer: ties in a sorted run `p0..p1` share `p0 + p1 + 1 - k`),
so per-row correlations are equal to the reference's exactly.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["block_kernel", "expect", "float16_tables", "kernel_for"]

COUNT_MAX = 128  # rows up to this many entries are ranked by counting (k^2 vector compares), longer ones sorted
# (float16: a radix sort, k + 256 steps per key byte; float32: numba's sort). Measured crossover: ~100-200.


# Stored values a process reduces with NumPy before it loads numba. Loading costs a fresh process
# about 0.5 s (importing numba ~0.25 s, reading the compiled kernel from its cache and its first call
# ~0.3; a first compile, once per machine, several seconds) and the kernel saves 25-35 ns a value
# against the NumPy path (measured on a synthetic and a real MiniLM store): past ~16 million values
# it pays for itself. A small store (the 200-line demo) never waits for numba.
LOAD_AFTER = 16_000_000
_state = {"seen": 0, "ahead": 0, "loaded": False}  # per process


def expect(values: int) -> None:
    """Say that this process is about to reduce `values` stored values (a whole part): when they reach
    `LOAD_AFTER`, the kernel is loaded for their first block instead of after `LOAD_AFTER` values
    reduced with NumPy."""
    _state["ahead"] = values


def kernel_for(values: int):
    """Return the compiled kernel for a block of `values` stored values, or None for the NumPy path:
    without numba, and until this process has been given (or told to `expect`) `LOAD_AFTER` values in all."""
    _state["seen"] += values
    if not _state["loaded"] and max(_state["seen"], _state["ahead"]) < LOAD_AFTER:  # the part's values are in both
        return None
    _state["loaded"] = True
    return block_kernel()


@functools.cache
def block_kernel():
    """Return the compiled kernel (`_block_sums`), or None when numba is not installed."""
    try:
        import numba
    except ImportError:
        return None
    # cache=True: compiled once per machine (a few seconds), then loaded from numba's cache.
    return numba.njit(cache=True, nogil=True)(_block_sums)


@functools.cache
def float16_tables() -> tuple[np.ndarray, np.ndarray]:
    """Return `(value, x log x)` of every float16 bit pattern as float64 `[65536]` (`x log x` is 0 for `x <= 0`)."""
    value = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        xlogx = np.where(value > 0, value * np.log(np.where(value > 0, value, 1.0)), 0.0)
    return value, xlogx


def _block_sums(
    bits,  # `[M, V]` uint16 or uint32: the block's stored values per method, examples one after another
    f32,  # `[M, V]` float32 view of `bits` when they are float32 (else unused)
    value_table,  # `[65536]` float64 when `bits` are float16 (else unused)
    xlogx_table,  # `[65536]` float64
    use_table,  # bool: `bits` are float16
    sign,  # uint64: the sign bit of one value's bits
    length,  # `[E]` int64 tokens per example
    value_start,  # `[E]` int64 where each example's values start in `bits`
    token_start,  # `[E]` int64 where each example's tokens start in the token arrays
    bucket,  # `[E]` int64 length bucket of each example
    cols,  # `[T]` int64 block type column of each token
    special,  # `[T]` float64 1.0 for a special source token
    punct,  # `[T]` float64 1.0 for a punctuation source token
    causal,  # bool: maps hold the lower triangle, row by row
    num_layers,
    max_offset,
    every,  # rank about one row in `every` (`StatsSpec.agreement_every`; drawn as `partial.sampled_rows`)
    seed,  # `[E]` int64 sum of each example's token ids
    pairs,  # `[P, 2]` int64 method indices of each agreement pair
    rs,  # `[9, M, B, L]` float64 out: ROW_SUMS of `partial`, in that order
    offset_mass,  # `[M, B, L, offsets]` float64 out
    offset_count,  # `[M, B, L, offsets]` float64 out
    agree_sum,  # `[P, B, L]` float64 out
    agree_count,  # `[P, B, L]` float64 out
    types,  # `[4, M, L, U]` float64 out: kept sum and count, given sum and count per block type
    own,  # `[E, 4, M, L]` float64 out: per example, self, context and special mass of its counted rows; their count
    kv,  # `[n_max rounded up to 32]` int16 (float16 values) or int32: scratch for one row's value keys
    cnt,  # the same shape and dtype: scratch for their counts
    count_max,  # rows of up to this many entries are ranked by counting, longer ones by sorting (`COUNT_MAX`)
):
    """Add every example of a block to the out arrays (names as in `vzcore.statistics.partial`)."""
    num_methods = bits.shape[0]
    num_pairs = pairs.shape[0]
    n_max = 1
    for e in range(length.shape[0]):
        n_max = max(n_max, length[e])
    x = np.empty((num_methods, n_max))  # one row of each method, decoded
    keys = np.empty(n_max, dtype=np.uint64)  # (value key, column) of one long row, sorted for its ranks
    ra = np.empty(n_max, dtype=np.uint32)  # (value key, column) words of one long float16 row: radix pass 1
    rb = np.empty(n_max, dtype=np.uint32)  # and pass 2 (sorted)
    hist = np.zeros((2, 256), dtype=np.int64)  # per key byte: counts, then where each byte's run starts
    c2 = np.zeros((num_methods, n_max))  # twice the centred ranks of one row
    ss = np.zeros(num_methods)  # their sums of squares
    scored = np.zeros(num_methods, dtype=np.bool_)
    gsum = np.zeros((num_methods, n_max))  # per source column: mass given to other counted rows
    kept = np.zeros((num_methods, n_max))  # 1.0 for each row of the map that counts
    om = np.zeros((num_methods, 2 * max_offset + 3))  # one map's offset masses
    oc = np.zeros((num_methods, 2 * max_offset + 3))  # and entry counts
    spc = np.empty(n_max, dtype=np.int64)  # the example's special source columns, in order
    puc = np.empty(n_max, dtype=np.int64)  # and punctuation ones
    psum = np.zeros(max(num_pairs, 1))
    pcnt = np.zeros(max(num_pairs, 1))
    nb = 2 * max_offset + 3
    for e in range(length.shape[0]):
        n, b, t0 = length[e], bucket[e], token_start[e]
        per_map = n * (n + 1) // 2 if causal else n * n
        n_sp = 0  # special and punctuation columns are few: their masses sum those entries only
        n_pu = 0
        for j in range(n):
            if special[t0 + j] != 0.0:
                spc[n_sp] = j
                n_sp += 1
            if punct[t0 + j] != 0.0:
                puc[n_pu] = j
                n_pu += 1
        for layer in range(num_layers):
            base = value_start[e] + layer * per_map
            gsum[:, :n] = 0.0
            kept[:, :n] = 0.0
            om[:, :] = 0.0
            oc[:, :] = 0.0
            psum[:] = 0.0
            pcnt[:] = 0.0
            for i in range(n):
                k = i + 1 if causal else n
                row = base + (i * (i + 1) // 2 if causal else i * n)
                ranked = num_pairs > 0 and k >= 3
                if ranked and every > 1:  # `vzcore.statistics.partial.sampled_rows`, in uint64 arithmetic
                    draw = (
                        np.uint64(i) * np.uint64(0x9E3779B97F4A7C15)
                        + np.uint64(layer) * np.uint64(0xC2B2AE3D27D4EB4F)
                        + np.uint64(seed[e]) * np.uint64(0x165667B19E3779F9)
                    )
                    draw ^= draw >> np.uint64(29)
                    draw *= np.uint64(0xBF58476D1CE4E5B9)
                    draw ^= draw >> np.uint64(32)
                    ranked = draw % np.uint64(every) == np.uint64(0)
                for m in range(num_methods):
                    s = 0.0
                    pos = 0.0  # with negative entries only the positive ones enter the entropy
                    t = 0.0
                    sp = 0.0
                    pu = 0.0
                    if use_table:  # float16: decoded, and keyed for the ranks, in one pass
                        for j in range(k):
                            code = bits[m, row + j]
                            v = value_table[code]
                            x[m, j] = v
                            s += v
                            pos += max(v, 0.0)
                            t += xlogx_table[code]
                            # signed ints that order as the values (-0.0 and +0.0 are both 0)
                            kv[j] = np.int16(code) if code < 32768 else np.int16(32768 - np.int32(code))
                    else:
                        for j in range(k):
                            v = np.float64(f32[m, row + j])
                            x[m, j] = v
                            s += v
                            pos += max(v, 0.0)
                            t += v * math.log(v) if v > 0 else 0.0
                    for q in range(n_sp):
                        if spc[q] < k:
                            sp += x[m, spc[q]]
                    for q in range(n_pu):
                        if puc[q] < k:
                            pu += x[m, puc[q]]
                    nan = False
                    if s != s:  # a NaN entry (an unscored row), or +inf and -inf
                        for j in range(k):
                            nan |= x[m, j] != x[m, j]
                    if ranked and not nan and not use_table:
                        for j in range(k):
                            code = np.uint64(bits[m, row + j])
                            kv[j] = np.int64(code) if code < sign else -np.int64(code - sign)
                    scored[m] = not nan
                    if nan:  # an unscored row: left out of everything
                        continue
                    if s == 0.0:
                        rs[6, m, b, layer] += 1.0  # zero_rows
                    if k < 2:
                        rs[1, m, b, layer] += 1.0  # single_rows
                        continue
                    d = x[m, i]
                    rs[0, m, b, layer] += 1.0  # rows
                    rs[2, m, b, layer] += d  # self_mass
                    rs[3, m, b, layer] += s - d  # context_mass
                    rs[4, m, b, layer] += sp  # special_mass
                    rs[5, m, b, layer] += pu  # punct_mass
                    own[e, 0, m, layer] += d  # the example's own sums (`PartialStats.top`)
                    own[e, 1, m, layer] += s - d
                    own[e, 2, m, layer] += sp
                    own[e, 3, m, layer] += 1.0
                    if s > 0.0:
                        h = (math.log(s) * pos - t) / s  # -sum p log p over p > 0, with p = x / s
                        rs[7, m, b, layer] += h / math.log(max(k, 2))  # entropy_sum
                        rs[8, m, b, layer] += 1.0  # entropy_rows
                    ci = cols[t0 + i]
                    types[0, m, layer, ci] += d
                    types[1, m, layer, ci] += 1.0
                    kept[m, i] = 1.0
                    # Offsets j - i: overflow bins below -max_offset and above it, one bin each between;
                    # the same pass adds what each source column gives to this (other) row.
                    lo, hi = max(i - max_offset, 0), min(i + max_offset + 1, k)
                    left = 0.0
                    for j in range(lo):
                        v = x[m, j]
                        left += v
                        gsum[m, j] += v
                    right = 0.0
                    for j in range(hi, k):
                        v = x[m, j]
                        right += v
                        gsum[m, j] += v
                    om[m, 0] += left
                    oc[m, 0] += lo
                    om[m, nb - 1] += right
                    oc[m, nb - 1] += k - hi
                    shift = max_offset + 1 - i
                    for j in range(lo, i):
                        v = x[m, j]
                        om[m, j + shift] += v
                        oc[m, j + shift] += 1.0
                        gsum[m, j] += v
                    om[m, max_offset + 1] += d
                    oc[m, max_offset + 1] += 1.0
                    for j in range(i + 1, hi):
                        v = x[m, j]
                        om[m, j + shift] += v
                        oc[m, j + shift] += 1.0
                        gsum[m, j] += v
                    if ranked and k <= count_max:
                        # Twice the centred rank of j is #(values < x_j) + #(values <= x_j) - k: a loop
                        # over j that compiles to vector compares, faster than a sort for short rows.
                        # Columns padded to a multiple of 16 (their counts unused): no scalar remainder loop.
                        kp = (k + 15) // 16 * 16
                        kv[k:kp] = 0
                        cnt[:kp] = 0
                        o = 0
                        while o + 4 <= k:  # four rows of compares per pass over the counts (fewer loads and stores)
                            k0, k1, k2, k3 = kv[o], kv[o + 1], kv[o + 2], kv[o + 3]
                            for j in range(kp):
                                vj = kv[j]
                                cnt[j] += np.int16(
                                    (k0 < vj)
                                    + (k0 <= vj)
                                    + (k1 < vj)
                                    + (k1 <= vj)
                                    + (k2 < vj)
                                    + (k2 <= vj)
                                    + (k3 < vj)
                                    + (k3 <= vj)
                                )
                            o += 4
                        while o < k:
                            ko = kv[o]
                            for j in range(kp):
                                cnt[j] += (ko < kv[j]) + (ko <= kv[j])
                            o += 1
                        sq = 0.0
                        for j in range(k):
                            c = float(cnt[j] - k)
                            c2[m, j] = c
                            sq += c * c
                        ss[m] = sq
                    elif ranked and use_table:
                        # Long float16 rows: a two-pass LSD radix sort of (16-bit value key, column) words,
                        # a byte of the key per pass (k + 256 steps each, against k log k compares).
                        hist[:, :] = 0
                        for j in range(k):
                            u = np.uint32(np.int32(kv[j]) + 32768)
                            hist[0, u & np.uint32(255)] += 1
                            hist[1, u >> np.uint32(8)] += 1
                        s0 = 0
                        s1 = 0
                        for byte in range(256):
                            c0 = hist[0, byte]
                            hist[0, byte] = s0
                            s0 += c0
                            c1 = hist[1, byte]
                            hist[1, byte] = s1
                            s1 += c1
                        for j in range(k):
                            u = np.uint32(np.int32(kv[j]) + 32768)
                            dg = u & np.uint32(255)
                            p = hist[0, dg]
                            hist[0, dg] = p + 1
                            ra[p] = (u << np.uint32(16)) | np.uint32(j)
                        for p in range(k):
                            w = ra[p]
                            dg = w >> np.uint32(24)
                            q = hist[1, dg]
                            hist[1, dg] = q + 1
                            rb[q] = w
                        sq = 0.0
                        p = 0
                        while p < k:
                            q = p
                            while q + 1 < k and (rb[q + 1] >> np.uint32(16)) == (rb[p] >> np.uint32(16)):
                                q += 1
                            c = float(p + q + 1 - k)
                            for r in range(p, q + 1):
                                c2[m, np.int64(rb[r] & np.uint32(0xFFFF))] = c
                            sq += c * c * (q + 1 - p)
                            p = q + 1
                        ss[m] = sq
                    elif ranked:  # long float32 rows: sort (value, column) pairs; a run p..q of ties shares its rank
                        for j in range(k):
                            keys[j] = (np.uint64(np.int64(kv[j]) + (1 << 31)) << np.uint64(32)) | np.uint64(j)
                        rank = keys[:k]
                        rank.sort()
                        sq = 0.0
                        p = 0
                        while p < k:
                            q = p
                            while q + 1 < k and (rank[q + 1] >> np.uint64(32)) == (rank[p] >> np.uint64(32)):
                                q += 1
                            c = float(p + q + 1 - k)
                            for r in range(p, q + 1):
                                c2[m, np.int64(rank[r] & np.uint64(0xFFFFFFFF))] = c
                            sq += c * c * (q + 1 - p)
                            p = q + 1
                        ss[m] = sq
                if not ranked:  # (ss holds another row's sums)
                    continue
                for pi in range(num_pairs):
                    a, c = pairs[pi, 0], pairs[pi, 1]
                    if scored[a] and scored[c] and ss[a] > 0.0 and ss[c] > 0.0:
                        dot = 0.0
                        for j in range(k):
                            dot += c2[a, j] * c2[c, j]
                        psum[pi] += dot / math.sqrt(ss[a] * ss[c])
                        pcnt[pi] += 1.0
            for m in range(num_methods):
                for o in range(nb):
                    offset_mass[m, b, layer, o] += om[m, o]
                    offset_count[m, b, layer, o] += oc[m, o]
                # Rows that take from source j: every other counted row (encoder), those after it (causal).
                total = 0.0
                for j in range(n):
                    total += kept[m, j]
                through = 0.0  # counted rows up to j (small integers: exact)
                for j in range(n):
                    through += kept[m, j]
                    given = total - through if causal else total - kept[m, j]
                    if given > 0.0:
                        cj = cols[t0 + j]
                        types[2, m, layer, cj] += gsum[m, j] / given
                        types[3, m, layer, cj] += 1.0
            for pi in range(num_pairs):
                if pcnt[pi] > 0.0:
                    agree_sum[pi, b, layer] += psum[pi] / pcnt[pi]
                    agree_count[pi, b, layer] += 1.0
