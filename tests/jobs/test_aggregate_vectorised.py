"""The block-at-once statistics (`vzcore.statistics.block`) equal the per-example reference (`add_example`)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("zarr")

from jobs.aggregate.driver import PartJob, aggregate_part
from tests.harness.synthetic_store import init_root, random_maps
from vzcore.statistics import PartialStats, StatsSpec, is_punctuation
from vzcore.store.completion import rebuild_index
from vzcore.store.layout import STATUS_NAMES
from vzcore.store.reader import open_part, open_store
from vzcore.store.writer import ExampleOutcome, write_part

METHODS = ("value_zeroing", "attention", "attention_norm")
NAMES = ["[CLS]", "[SEP]", ".", ",", "Ġ!", "a", "b", "c", "d", "e", "f", "g"]


def _store(path, causal: bool, dtype: str, negative: bool = False, lengths=(1, 2, 3, 4, 4, 5, 8, 8, 8, 13)) -> None:
    """Two parts of examples with repeated lengths (1 to 13 tokens), ties, zero and NaN rows, failures."""
    rng = np.random.default_rng(3)
    layers = 3
    plan = [{"part": 0, "start": 0, "stop": 20}, {"part": 1, "start": 20, "stop": 34}]
    init_root(path, methods=METHODS, layers=range(layers), causal=causal, plan=plan, special_token_ids=[0, 1])
    outcomes = []
    for i in range(34):
        if i % 7 == 3:
            outcomes.append(ExampleOutcome.failed(i, "too long"))
            continue
        n = lengths[i % len(lengths)]
        ids = rng.integers(0, len(NAMES), n).tolist()
        scores = {}
        for k, m in enumerate(METHODS):
            maps = random_maps(rng, layers, n, causal).astype(np.float64)
            if k == 1:
                maps = np.round(maps * 4) / 4  # many ties, and all-zero rows
            if k == 2 and i % 3 == 0:
                maps[:, :, : max(n // 2, 1)] = 0.0  # ties at zero
            if i % 5 == 2 and n > 1:
                maps[i % layers, n - 1] = np.nan  # an unscored row
            if i % 11 == 6:
                maps[1] = np.nan  # a whole unscored map
            if negative and k == 0:
                maps = maps - 0.05  # signed scores (and some -0.0 in float16)
                maps[0, 0, 0] = -0.0
            scores[m] = np.tril(maps) if causal else maps
        outcomes.append(
            ExampleOutcome(i, tokens=[NAMES[t] for t in ids], token_ids=ids, word_ids=list(range(n)), scores=scores)
        )
    for p in plan:
        write_part(
            str(path),
            p["part"],
            outcomes[p["start"] : p["stop"]],
            METHODS,
            causal=causal,
            num_maps=layers,
            start=p["start"],
            stop=p["stop"],
            store_dtype=dtype,
        )
    rebuild_index(str(path))  # the parts count as done (without it the tests below would read no part)


def _per_example(job: PartJob) -> PartialStats:
    """The reference: every example unpacked to `[L, n, n]` and added on its own."""
    reader = open_part(job.location, job.part, job.info)
    stats = PartialStats(job.spec)
    for status, count in zip(*np.unique(reader.status, return_counts=True), strict=True):
        stats.count_status(STATUS_NAMES.get(int(status), str(status)), int(count))
    special_ids = np.asarray(job.info.special_token_ids, dtype=np.int64)
    for block in reader.iter_results(job.spec.methods):
        for _, result in block:
            ids = np.asarray(result.token_ids, dtype=np.int64)
            special = np.isin(ids, special_ids)
            punct = np.asarray([is_punctuation(t) for t in result.tokens], dtype=bool) & ~special
            stats.add_example(result.scores, ids, special, punct, result.tokens)
    return stats


@pytest.fixture(params=["compiled", "compiled-sorting", "numpy"])
def implementation(request, monkeypatch):
    """Each way `add_block` can run: the numba kernel (ranks by counting, or by sorting as for rows longer
    than `COUNT_MAX`) and the NumPy path used without numba."""
    import vzcore.statistics.block as block
    from vzcore.statistics.kernel import block_kernel

    if request.param == "numpy":
        monkeypatch.setattr(block, "kernel_for", lambda values: None)
    else:
        pytest.importorskip("numba")
        assert block_kernel() is not None
        monkeypatch.setattr(block, "kernel_for", lambda values: block_kernel())  # small stores included
    if request.param == "compiled-sorting":
        monkeypatch.setattr(block, "COUNT_MAX", 0)
    return request.param


@pytest.mark.parametrize(
    "causal,dtype,negative,every",
    [
        (False, "float16", False, 1),
        (True, "float16", False, 1),
        (False, "float32", False, 1),
        (True, "float16", True, 1),
        (False, "float16", False, 3),  # agreement from sampled rows
        (True, "float32", False, 2),
    ],
)
def test_block_statistics_equal_per_example_reference(tmp_path, causal, dtype, negative, every, implementation):
    path = tmp_path / "s.zarr"
    _store(path, causal, dtype, negative)
    store = open_store(path)
    spec = StatsSpec(METHODS, 3, causal, bucket_edges=(1, 4, 8), max_offset=2, agreement_every=every)
    assert store.done_parts() == [0, 1]
    for part in store.done_parts():
        job = PartJob(store.location, store.info, part, spec)
        got, want = aggregate_part(None, job), _per_example(job)
        assert got.status_counts == want.status_counts
        assert got.type_tokens == want.type_tokens
        np.testing.assert_array_equal(got.type_ids, want.type_ids)
        np.testing.assert_allclose(got.type_sums, want.type_sums, rtol=1e-12, atol=1e-13)
        assert set(got.sums) == set(want.sums)
        for name in want.sums:
            np.testing.assert_allclose(got.sums[name], want.sums[name], rtol=1e-12, atol=1e-13, err_msg=name)
        assert want.sums["agree_count"].sum() > 0 and want.sums["single_rows"].sum() > 0


def test_small_blocks_equal_one_block(tmp_path, implementation):
    """A part read in many blocks (down to one example each) sums to the same as in one block."""
    path = tmp_path / "s.zarr"
    _store(path, True, "float16")
    store = open_store(path)
    spec = StatsSpec(METHODS, 3, True, bucket_edges=(1, 4, 8), max_offset=2)
    job = PartJob(store.location, store.info, 0, spec)
    whole = aggregate_part(None, job)
    split = aggregate_part(None, PartJob(store.location, store.info, 0, spec, block_values=1))
    for name in whole.sums:
        np.testing.assert_allclose(split.sums[name], whole.sums[name], rtol=1e-12, atol=1e-13, err_msg=name)
    np.testing.assert_allclose(split.type_sums, whole.type_sums, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("n", [3, 17, 70])
def test_block_ranks_equal_reference_ranks(causal, dtype, n):
    """Doubled centred ranks equal the reference's, for rows of neighbouring floats (keys one unit
    apart), ties and ±0."""
    from vzcore.statistics.block import _centred_ranks2, _template
    from vzcore.statistics.partial import _centred_ranks

    rng = np.random.default_rng(n)
    steps = rng.integers(0, 3, (2, 4, n, n))  # 0: a tie with the previous value; 1: its float neighbour
    base = np.asarray(0.01 if dtype == np.float16 else 0.3, dtype=dtype)
    raw = np.empty((2, 4, n, n), dtype=dtype)
    for idx in np.ndindex(raw.shape[:-1]):
        v, row = base, []
        for s in steps[idx]:
            for _ in range(s):
                v = np.nextafter(v, dtype(1))
            row.append(v)
        raw[idx] = rng.permutation(np.asarray(row, dtype=dtype))
    raw[0, 0, :, 0] = -0.0  # ties with +0.0
    raw[0, 0, :, 1] = 0.0
    raw[1, 1] = -raw[1, 1]  # signed values
    t = _template(n, causal, 2)
    if causal:
        raw = np.where(t.valid, raw, dtype(0))
    got, got_ss = _centred_ranks2(raw, t)
    want, want_ss = _centred_ranks(raw.astype(np.float64).reshape(-1, n, n), t.valid, t.k_valid)
    np.testing.assert_array_equal(got, 2 * want.reshape(raw.shape))
    np.testing.assert_array_equal(got_ss, 4 * want_ss.reshape(raw.shape[:-1]))


def test_sampled_agreement_uses_fewer_rows_and_only_those(tmp_path):
    """Sampling changes only the agreement sums, and it drops sentences (those with no sampled row)."""
    path = tmp_path / "s.zarr"
    _store(path, False, "float16")
    store = open_store(path)
    exact = aggregate_part(None, PartJob(store.location, store.info, 0, StatsSpec(METHODS, 3, False)))
    sampled_spec = StatsSpec(METHODS, 3, False, agreement_every=4)
    sampled = aggregate_part(None, PartJob(store.location, store.info, 0, sampled_spec))
    for name in exact.sums:
        if name.startswith("agree"):
            assert not np.allclose(sampled.sums[name], exact.sums[name]), name
        else:
            np.testing.assert_array_equal(sampled.sums[name], exact.sums[name], err_msg=name)
    assert 0 < sampled.sums["agree_count"].sum() < exact.sums["agree_count"].sum()
    with pytest.raises(ValueError, match="agreement_every"):
        StatsSpec(METHODS, 3, False, agreement_every=0)


def test_methods_stored_in_different_dtypes_are_added_as_the_reference_adds_them(implementation):
    # a method added to a store later may be stored in another dtype (`--store-dtype` is per method)
    from vzcore.statistics.block import ExampleBlock, add_block
    from vzcore.store.layout import pack_maps

    rng = np.random.default_rng(5)
    spec = StatsSpec(("value_zeroing", "attention"), 2, False)
    got, want = PartialStats(spec), PartialStats(spec)
    maps = {m: random_maps(rng, 2, 6, False) for m in spec.methods}
    stored = {"value_zeroing": np.float16, "attention": np.float32}
    values = {m: [pack_maps(maps[m], False).astype(stored[m])] for m in spec.methods}
    ids, flags = np.arange(6), np.zeros(6, dtype=bool)
    add_block(got, ExampleBlock(np.array([6]), ids, values, flags, flags), {i: NAMES[i] for i in range(6)})
    as_read = {m: maps[m].astype(stored[m]).astype(np.float64) for m in spec.methods}
    want.add_example(as_read, ids, flags, flags, [NAMES[i] for i in range(6)])
    for name in want.sums:
        np.testing.assert_allclose(got.sums[name], want.sums[name], rtol=1e-12, atol=1e-13, err_msg=name)


def test_numba_is_loaded_only_for_enough_work(monkeypatch):
    """A process reduces its first `LOAD_AFTER` values with NumPy (a small store never pays for numba), then
    the kernel, for good."""
    from vzcore.statistics import kernel

    monkeypatch.setattr(kernel, "_state", {"seen": 0, "ahead": 0, "loaded": False})
    monkeypatch.setattr(kernel, "block_kernel", lambda: "compiled")
    assert kernel.kernel_for(kernel.LOAD_AFTER // 2) is None
    assert kernel.kernel_for(kernel.LOAD_AFTER // 2) == "compiled"
    assert kernel.kernel_for(1) == "compiled"


def test_a_part_big_enough_gets_numba_from_its_first_block(monkeypatch):
    """A part announced (`expect`) with `LOAD_AFTER` values or more is reduced by the kernel from its first
    block; a smaller one starts with NumPy."""
    from vzcore.statistics import kernel

    monkeypatch.setattr(kernel, "_state", {"seen": 0, "ahead": 0, "loaded": False})
    monkeypatch.setattr(kernel, "block_kernel", lambda: "compiled")
    kernel.expect(kernel.LOAD_AFTER // 4)
    assert kernel.kernel_for(1000) is None
    kernel.expect(kernel.LOAD_AFTER)
    assert kernel.kernel_for(1000) == "compiled"
    # A part under the threshold stays on NumPy to its end: its own blocks are not counted twice.
    monkeypatch.setattr(kernel, "_state", {"seen": 0, "ahead": 0, "loaded": False})
    kernel.expect(kernel.LOAD_AFTER * 9 // 16)
    assert [kernel.kernel_for(kernel.LOAD_AFTER * 9 // 32) for _ in range(2)] == [None, None]
    assert kernel.kernel_for(kernel.LOAD_AFTER // 2) == "compiled"  # past it in all: loaded


@pytest.mark.parametrize("causal", [False, True])
def test_long_rows_equal_per_example_reference(tmp_path, causal, implementation):
    """Rows across the kernel's 32-column padding and past `COUNT_MAX` (ranked by sorting)."""
    path = tmp_path / "s.zarr"
    _store(path, causal, "float16", lengths=(31, 33, 64, 70, 130))
    store = open_store(path)
    spec = StatsSpec(METHODS, 3, causal, bucket_edges=(1, 40, 100), max_offset=4)
    job = PartJob(store.location, store.info, 1, spec)
    got, want = aggregate_part(None, job), _per_example(job)
    np.testing.assert_allclose(got.type_sums, want.type_sums, rtol=1e-12, atol=1e-12)
    for name in want.sums:
        np.testing.assert_allclose(got.sums[name], want.sums[name], rtol=1e-12, atol=1e-12, err_msg=name)
    assert want.sums["agree_count"].sum() > 0


@pytest.mark.parametrize("causal", [False, True])
def test_the_kept_top_examples_are_the_same_on_every_path(tmp_path, causal, monkeypatch):
    """The compiled kernel sums each example's own masses as it goes; the NumPy path computes them per
    group: both keep the same examples with the same values (NaN rows, failures and one-token texts included)."""
    pytest.importorskip("numba")
    import vzcore.statistics.block as block
    from vzcore.statistics.kernel import block_kernel

    path = tmp_path / "s.zarr"
    _store(path, causal, "float16")
    store = open_store(path)
    spec = StatsSpec(METHODS, 3, causal, bucket_edges=(1, 4, 8), max_offset=2, top_k=6)

    def kept(kernel) -> dict[str, np.ndarray]:
        monkeypatch.setattr(block, "kernel_for", lambda values: kernel)
        total = PartialStats(spec)
        for part in store.done_parts():
            total.merge(aggregate_part(None, PartJob(store.location, store.info, part, spec)))
        assert total.top is not None
        return total.top.columns(list(METHODS), store.layers)

    compiled, plain = kept(block_kernel()), kept(None)
    assert compiled.keys() == plain.keys() and len(plain["example_id"]) > 0
    for name in plain:
        if plain[name].dtype.kind == "f":
            np.testing.assert_allclose(compiled[name], plain[name], rtol=1e-12, atol=1e-13, err_msg=name)
        else:
            np.testing.assert_array_equal(compiled[name], plain[name], err_msg=name)
