"""Reduced stores (layout v4): top-k rows and targeted rows read back dense, verified, aggregated, queried.

Expected values are written from the definitions (a plain loop for the top-k choice; numbers by
hand for the statistics), never taken from the code under test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("zarr")

import vzcore
from jobs.aggregate.driver import PartJob, aggregate_part
from tests.harness.synthetic_store import init_root, plan_parts, random_maps
from vzcore.queries import token_rows, top_examples
from vzcore.statistics import StatsSpec
from vzcore.store.completion import mark_done
from vzcore.store.errors import StoreError
from vzcore.store.forms import StoreForm, parse_store_form, top_k_rows
from vzcore.store.layout import part_path
from vzcore.store.location import Location
from vzcore.store.verify import verify_store
from vzcore.store.writer import ExampleOutcome, write_part

METHODS = ("value_zeroing", "attention")


def outcome(i: int, maps: dict[str, np.ndarray], rows=None) -> ExampleOutcome:
    n = next(iter(maps.values())).shape[-1]
    ids = [0, *range(5, 5 + n - 2), 1] if n > 1 else [5]
    return ExampleOutcome(
        i, tokens=[f"t{t}" for t in ids], token_ids=ids, word_ids=list(range(n)), scores=maps, rows=rows
    )


def make_store(path, outcomes, *, causal, layers, form=None, targets=None, dtype="float32", part_size=3):
    """Write `outcomes` as a store of parts of `part_size` examples, each marked done."""
    plan = plan_parts(len(outcomes), part_size)
    methods = list(next(iter(o.scores for o in outcomes if o.scores)))
    form = form or StoreForm()
    init_root(
        path,
        methods=methods,
        layers=list(range(layers)),
        causal=causal,
        plan=plan,
        special_token_ids=[0, 1],
        store_form=form.to_attr() if form.reduced else None,
        targets=targets,
    )
    loc = Location(str(path))
    for p in plan:
        outs = outcomes[p["start"] : p["stop"]]
        write_part(
            loc, p["part"], outs, methods, causal=causal, num_maps=layers, start=p["start"], stop=p["stop"],
            store_dtype=dtype, texts=[f"text {o.example_id}" for o in outs], special_ids=[0, 1], form=form,
            targeted=targets is not None,
        )  # fmt: skip
        mark_done(loc.open_group(mode="r+"), p["part"], (1 << len(methods)) - 1)
    return vzcore.open_store(path)


def reference_kept(row: np.ndarray, valid: np.ndarray, k: int, threshold: float) -> list[int]:
    """The top-k definition: valid sources at or above the threshold, the k largest (ties: lower source)."""
    candidates = [(float(v), j) for j, v in enumerate(row) if valid[j] and v >= threshold]
    candidates.sort(key=lambda vj: (-vj[0], vj[1]))
    return sorted(j for _, j in candidates[:k])


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_top_k_store_reads_back_as_the_dense_store_where_kept_and_zero_elsewhere(tmp_path, causal, dtype):
    rng = np.random.default_rng(3)
    lengths = [1, 4, 9, 2, 13, 6, 30]
    outs = [outcome(i, {m: random_maps(rng, 2, n, causal) for m in METHODS}) for i, n in enumerate(lengths)]
    outs.insert(3, ExampleOutcome.failed(3, "synthetic failure"))
    outs = [o if o.example_id < 3 else ExampleOutcome(**{**o.__dict__, "example_id": k}) for k, o in enumerate(outs)]
    form = StoreForm("top-k", 3, 0.05)
    dense = make_store(tmp_path / "d.zarr", outs, causal=causal, layers=2, dtype=dtype)
    sparse = make_store(tmp_path / "s.zarr", outs, causal=causal, layers=2, form=form, dtype=dtype)
    assert dense.layout == 3 and sparse.layout == 4
    seen = 0
    for eid in range(len(outs)):
        if outs[eid].status != 0:
            continue
        d, s = dense.example(eid), sparse.example(eid)
        n = d.n
        valid = np.tril(np.ones((n, n), bool)) if causal else np.ones((n, n), bool)
        for m in METHODS:
            want = np.zeros_like(d.scores[m])
            for layer in range(2):
                for i in range(n):
                    kept = reference_kept(d.scores[m][layer, i], valid[i], form.k, form.threshold)
                    want[layer, i, kept] = d.scores[m][layer, i, kept]
                    seen += len(kept)
            np.testing.assert_array_equal(s.scores[m], want)
            np.testing.assert_allclose(s.kept_mass[m], want.astype(np.float64).sum(-1), rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(d.kept_mass[m], d.scores[m].astype(np.float64).sum(-1), rtol=1e-6)
        assert s.scored_rows.all()
    assert seen > 50
    assert verify_store(str(tmp_path / "s.zarr")) == []


def test_top_k_rows_against_the_definition_with_ties_and_nan_rows():
    maps = np.asarray([[[0.2, 0.3, 0.3, 0.2], [0.7, 0.1, 0.1, 0.1], [np.nan] * 4, [0.0] * 4]], np.float32)
    got = top_k_rows(maps, np.arange(4), 2, 0.15, False, "float32")
    assert got.count.tolist() == [2, 1, 0, 0]
    assert got.source.tolist() == [1, 2, 0]  # row 0: the tie 0.3/0.3 keeps both, in source order
    np.testing.assert_allclose(got.mass, [0.6, 0.7, np.nan, 0.0], equal_nan=True)


def test_auto_stores_short_examples_dense_and_long_ones_top_k(tmp_path):
    rng = np.random.default_rng(0)
    outs = [outcome(i, {"value_zeroing": random_maps(rng, 1, n, False)}) for i, n in enumerate([3, 6, 7, 12])]
    form = StoreForm("auto", k=2, threshold=0.0, dense_max_tokens=6)
    store = make_store(tmp_path / "a.zarr", outs, causal=False, layers=1, form=form, part_size=4)
    assert store.part_reader(0).rows.form.tolist() == [0, 0, 1, 1]
    for o in outs:
        got = store.example(o.example_id).scores["value_zeroing"]
        if o.n <= 6:
            np.testing.assert_array_equal(got, o.scores["value_zeroing"])
        else:
            assert ((got != 0).sum(-1) == 2).all()


HAND = np.asarray([[[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5]]], np.float32)
# Top-2 at or above 0.2 of HAND, by hand: row 2 keeps 0.5 and the first of its tied 0.25s.
HAND_TOP2 = np.asarray([[[0.5, 0.3, 0.0], [0.0, 0.6, 0.3], [0.25, 0.0, 0.5]]])


def stats_of(store, part=0):
    spec = StatsSpec(tuple(store.methods), len(store.layers), store.causal)
    return aggregate_part(None, PartJob(store.location, store.info, part, spec)).sums


@pytest.mark.parametrize("kind", ["top-k", "targets", "both"])
def test_aggregate_and_queries_on_hand_made_reduced_stores(tmp_path, kind):
    form = StoreForm("top-k", 2, 0.2) if kind != "targets" else None
    targets = {"kind": "last"} if kind != "top-k" else None
    rows = [1] if targets else None  # tokens [CLS] t5 [SEP]: the last non-special token is row 1
    store = make_store(
        tmp_path / "h.zarr", [outcome(0, {"value_zeroing": HAND}, rows)], causal=False, layers=1, form=form,
        targets=targets,
    )  # fmt: skip
    got = store.example(0)
    sums = stats_of(store)
    if kind == "top-k":
        np.testing.assert_allclose(got.scores["value_zeroing"], HAND_TOP2, atol=1e-7)
        np.testing.assert_allclose(got.kept_mass["value_zeroing"], [[0.8, 0.9, 0.75]], atol=1e-6)
        # Three rows; self 0.5 + 0.6 + 0.5; context 0.3 + 0.3 + 0.25; on [CLS] and [SEP]: 0.5 + 0.3 + 0.75.
        want = {"rows": 3, "self_mass": 1.6, "context_mass": 0.85, "special_mass": 1.55, "zero_rows": 0}
        p = [np.array([0.5, 0.3]) / 0.8, np.array([0.6, 0.3]) / 0.9, np.array([0.25, 0.5]) / 0.75]
        want["entropy_sum"] = sum(-(q * np.log(q)).sum() for q in p) / np.log(3)
    else:
        row = HAND_TOP2[0, 1] if kind == "both" else HAND[0, 1]
        assert np.isnan(got.scores["value_zeroing"][0, [0, 2]]).all() and got.scored_rows.tolist() == [0, 1, 0]
        np.testing.assert_allclose(got.scores["value_zeroing"][0, 1], row, atol=1e-7)
        want = {"rows": 1, "self_mass": 0.6, "context_mass": row[0] + row[2], "special_mass": row[0] + row[2]}
    for name, value in want.items():
        np.testing.assert_allclose(sums[name][0, 0, 0], value, atol=1e-6, err_msg=name)
    table = token_rows(store, 5, 0, "value_zeroing")
    expect = HAND_TOP2[0, 1] if form else HAND[0, 1]
    np.testing.assert_allclose(table["weight"], expect, atol=1e-7)
    top = top_examples(store, "self_mass", "value_zeroing", 0, k=1)
    np.testing.assert_allclose(top["value"], [1.6 / 3 if kind == "top-k" else 0.6], atol=1e-6)
    assert verify_store(str(tmp_path / "h.zarr")) == []


def test_causal_top_k_counts_single_rows_apart(tmp_path):
    maps = np.asarray([[[1.0, 0, 0], [0.3, 0.7, 0], [0.1, 0.2, 0.7]]], np.float32)
    store = make_store(
        tmp_path / "c.zarr", [outcome(0, {"value_zeroing": maps})], causal=True, layers=1,
        form=StoreForm("top-k", 1, 0.0),
    )  # fmt: skip
    sums = stats_of(store)
    # Row 0 has one valid entry (counted apart); rows 1 and 2 keep only their 0.7 diagonal.
    assert (sums["single_rows"][0, 0, 0], sums["rows"][0, 0, 0]) == (1, 2)
    np.testing.assert_allclose([sums["self_mass"][0, 0, 0], sums["context_mass"][0, 0, 0]], [1.4, 0.0], atol=1e-6)


def corrupt(path, part, array, values):
    import zarr

    arr = zarr.open_group(str(path), mode="r+")[f"{part_path(part)}/{array}"]
    arr[: len(values)] = values


@pytest.mark.parametrize(
    "array, values",
    [("topk/value_zeroing/source", [99]), ("topk/value_zeroing/mass", [7.0]), ("topk/value_zeroing/count", [50])],
)
def test_verify_finds_a_corrupted_top_k_part(tmp_path, array, values):
    rng = np.random.default_rng(1)
    outs = [outcome(i, {"value_zeroing": random_maps(rng, 2, n, False)}) for i, n in enumerate([5, 8, 6, 7])]
    path = tmp_path / "v.zarr"
    make_store(path, outs, causal=False, layers=2, form=StoreForm("top-k", 3, 0.01), part_size=2)
    assert verify_store(str(path)) == []
    corrupt(path, 1, array, values)
    broken = verify_store(str(path), repair=True)
    assert [b.part for b in broken] == [1]
    assert vzcore.open_store(path).done_parts() == [0]


def test_verify_finds_a_missing_top_k_chunk(tmp_path):
    rng = np.random.default_rng(2)
    outs = [outcome(i, {"value_zeroing": random_maps(rng, 2, 6, False)}) for i in range(2)]
    path = tmp_path / "m.zarr"
    make_store(path, outs, causal=False, layers=2, form=StoreForm("top-k", 3, 0.01))
    (path / part_path(0) / "topk" / "value_zeroing" / "value" / "c" / "0").write_bytes(b"garbage")
    assert [b.part for b in verify_store(str(path))] == [0]


def test_a_reader_refuses_a_form_it_does_not_know(tmp_path):
    rng = np.random.default_rng(4)
    path = tmp_path / "u.zarr"
    make_store(path, [outcome(0, {"value_zeroing": random_maps(rng, 1, 4, False)})], causal=False, layers=1,
               form=StoreForm("top-k", 2, 0.0))  # fmt: skip
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["store_form"] = {"kind": "word-pooled"}
    meta.write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="unknown store form"):
        vzcore.open_store(path)
    doc["attributes"]["store_form"] = {"kind": "top-k", "k": 2, "threshold": 0.0}
    meta.write_text(json.dumps(doc))
    corrupt(path, 0, "form", [5])
    with pytest.raises(StoreError, match="unknown map form"):
        vzcore.open_store(path).example(0)


def test_parse_store_form():
    assert parse_store_form("dense") == StoreForm() and parse_store_form("auto").kind == "auto"
    assert parse_store_form("top-k=16,threshold=0.01") == StoreForm("top-k", 16, 0.01)
    assert parse_store_form("top-k") == StoreForm("top-k", 8, 0.005)
    for bad in ("sparse", "top-k=0", "top-k=8,cutoff=1", "top-k=x", "top-k=4,threshold=-1"):
        with pytest.raises(ValueError):
            parse_store_form(bad)
    # Rows sum to 1: a threshold above 1 would keep nothing, so it is refused with the reason.
    with pytest.raises(ValueError, match="above 1: rows are normalised to sum to 1"):
        parse_store_form("top-k=8,threshold=2")
    assert parse_store_form("top-k=8,threshold=1").threshold == 1.0


def test_a_method_added_to_a_top_k_part_keeps_the_first_ones(tmp_path):
    rng = np.random.default_rng(5)
    maps = [{m: random_maps(rng, 2, n, True) for m in METHODS} for n in (5, 7)]
    form = StoreForm("top-k", 2, 0.0)
    path = tmp_path / "add.zarr"
    first = [outcome(i, {"value_zeroing": m["value_zeroing"]}, [1, 3]) for i, m in enumerate(maps)]
    store = make_store(path, first, causal=True, layers=2, form=form, targets={"kind": "column", "column": "p"})
    both = [outcome(i, m, [1, 3]) for i, m in enumerate(maps)]
    write_part(Location(str(path)), 0, both, ["attention"], causal=True, num_maps=2, start=0, stop=2, form=form,
               targeted=True, store_dtype="float32")  # fmt: skip
    assert "maps stored: top-2 sources per row at or above 0; rows: column=p" in store.describe()
    part = vzcore.open_store(path).part_reader(0)
    got = dict(part.iter_results(["value_zeroing", "attention"]).__next__())
    for i, m in enumerate(maps):
        for name in METHODS:
            x = got[i].scores[name]
            assert np.isnan(x[:, [0, 2, 4]]).all() and ((x[:, [1, 3]] != 0).sum(-1) == 2).all()
            kept = x[:, [1, 3]] != 0
            np.testing.assert_array_equal(x[:, [1, 3]][kept], m[name][:, [1, 3]][kept])


@pytest.mark.parametrize("causal", [False, True])
def test_a_dense_targeted_store_holds_its_rows_whole_and_nan_elsewhere(tmp_path, causal):
    rng = np.random.default_rng(6)
    maps = [random_maps(rng, 2, n, causal) for n in (4, 9, 1)]
    rows = [[0, 3], [8], [0]]
    outs = [outcome(i, {"value_zeroing": m}, r) for i, (m, r) in enumerate(zip(maps, rows, strict=True))]
    store = make_store(tmp_path / "t.zarr", outs, causal=causal, layers=2, targets={"kind": "mask"})
    for i, (m, r) in enumerate(zip(maps, rows, strict=True)):
        got = store.example(i)
        x = got.scores["value_zeroing"]
        np.testing.assert_array_equal(x[:, r], m[:, r])  # above the diagonal: 0 in both
        others = [k for k in range(m.shape[-1]) if k not in r]
        assert np.isnan(x[:, others]).all() and got.scored_rows.tolist() == [k in r for k in range(m.shape[-1])]
        np.testing.assert_allclose(got.kept_mass["value_zeroing"][:, r], m[:, r].sum(-1), rtol=1e-6)
    assert verify_store(str(tmp_path / "t.zarr")) == []
