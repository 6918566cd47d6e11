"""The part writer against the layout contract, read back with plain zarr (no Ray, no models)."""

from __future__ import annotations

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

from vzcore.store.completion import complete_methods, part_state  # noqa: E402
from vzcore.store.layout import (  # noqa: E402
    STATUS_SCORED,
    STATUS_SKIPPED,
    pack_maps,
    packed_size,
    part_path,
    unpack_maps,
)
from vzcore.store.writer import ExampleOutcome, write_part  # noqa: E402


def _maps(rng, layers, n, causal):
    m = rng.random((layers, n, n), dtype=np.float32)
    if causal:
        m = np.tril(m)
    return m / m.sum(-1, keepdims=True)


@pytest.mark.parametrize("causal", [False, True])
def test_pack_unpack_roundtrip(causal):
    rng = np.random.default_rng(0)
    for n in (1, 2, 7):
        m = _maps(rng, 3, n, causal)
        flat = pack_maps(m, causal)
        assert flat.size == packed_size(n, n, 3, causal)
        np.testing.assert_array_equal(unpack_maps(flat, n, n, 3, causal), m)


@pytest.mark.parametrize("causal", [False, True])
def test_write_part_reads_back_with_plain_zarr(tmp_path, causal):
    rng = np.random.default_rng(1)
    outcomes = [
        ExampleOutcome(
            10,
            tokens=["[CLS]", "hi", "[SEP]"],
            token_ids=[101, 7, 102],
            word_ids=[None, 0, None],
            scores={"a": _maps(rng, 2, 3, causal)},
        ),
        ExampleOutcome.failed(11, "empty text", skipped=True),
        ExampleOutcome(
            12,
            tokens=["x", "y"],
            token_ids=[1, 2],
            word_ids=[0, 1],
            truncated=True,
            scores={"a": _maps(rng, 2, 2, causal)},
        ),
    ]
    store = str(tmp_path / "s.zarr")
    write_part(store, 4, outcomes, ["a"], causal=causal, num_maps=2, start=10, stop=13)
    g = zarr.open_group(store, mode="r")[part_path(4)]
    assert complete_methods(dict(g.attrs)) == ["a"]
    assert g.attrs["failures"] == {"11": "empty text"}
    np.testing.assert_array_equal(g["example_id"][:], [10, 11, 12])
    np.testing.assert_array_equal(g["status"][:], [STATUS_SCORED, STATUS_SKIPPED, STATUS_SCORED])
    np.testing.assert_array_equal(g["length"][:], [3, 0, 2])
    np.testing.assert_array_equal(g["truncated"][:], [False, False, True])
    to, vo = g["token_offset"][:], g["value_offset"][:]
    np.testing.assert_array_equal(g["word_ids"][to[0] : to[1]], [-1, 0, -1])
    assert list(g["tokens"][to[2] : to[3]]) == ["x", "y"]
    assert g["scores/a"].dtype == np.float16
    for k in (0, 2):
        got = unpack_maps(g["scores/a"][vo[k] : vo[k + 1]], outcomes[k].n, outcomes[k].n, 2, causal)
        np.testing.assert_allclose(got, outcomes[k].scores["a"], atol=2.5e-4)


def test_maps_that_are_not_the_examples_self_maps_are_refused(tmp_path):
    """A store's maps are `[layers, n, n]` over each example's tokens: another shape is a clear error."""
    tokens = dict(tokens=["a", "b", "c"], token_ids=[1, 2, 3], word_ids=[0, 1, 2])
    for maps in (np.ones((1, 3, 2)), np.ones((1, 2, 2))):  # a non-square map; a map of another text's length
        outcome = ExampleOutcome(7, scores={"a": maps}, **tokens)
        with pytest.raises(ValueError, match=r"example 7: maps of shape .* the store holds 1 layers of \[3, 3\]"):
            write_part(str(tmp_path / "s.zarr"), 0, [outcome], ["a"], causal=False, num_maps=1)


def test_adding_a_method_keeps_base_arrays_and_extends_complete(tmp_path):
    rng = np.random.default_rng(2)
    maps = _maps(rng, 1, 2, False)
    o = [ExampleOutcome(0, tokens=["a", "b"], token_ids=[1, 2], word_ids=[0, 1], scores={"a": maps, "b": maps})]
    store = str(tmp_path / "s.zarr")
    write_part(store, 0, o, ["a"], causal=False, num_maps=1, store_dtype="float32")
    write_part(store, 0, o, ["b"], causal=False, num_maps=1, store_dtype="float32")
    state = part_state(zarr.open_group(store, mode="r"), 0)
    assert state["complete"] == ["a", "b"]
    g = zarr.open_group(store, mode="r")[part_path(0)]
    np.testing.assert_array_equal(g["scores/b"][:], maps.reshape(-1))
    assert part_state(zarr.open_group(store, mode="r"), 1) is None


def test_a_part_write_reads_nothing_that_grows_with_the_store(tmp_path, monkeypatch):
    """Writes do not grow with the store: outside its own group a part write reads only the root's
    and `parts/`'s metadata, which stay small (the plan is an array of its own)."""
    from tests.support import record_reads
    from vzcore.store.root import RootAttrs, write_root_attrs

    store = str(tmp_path / "s.zarr")
    plan = [{"part": k, "start": k, "stop": k + 1} for k in range(100_000)]  # a large store's plan
    info = RootAttrs(methods=["a", "b"], layers=[0], model_num_layers=1, causal=False, model_type="bert", plan=plan)
    write_root_attrs(zarr.open_group(store, mode="w"), info)
    assert (tmp_path / "s.zarr" / "zarr.json").stat().st_size < 4096  # the plan is not in the root's metadata
    read = record_reads(monkeypatch)
    outcomes = [ExampleOutcome(0, tokens=["a", "b"], token_ids=[1, 2], word_ids=[0, 1], scores={"a": np.eye(2)[None]})]
    write_part(store, 3, outcomes, ["a"], causal=False, num_maps=1)
    write_part(store, 3, outcomes, ["b"], causal=False, num_maps=1)  # reuses the part: reads its arrays
    # Creating the part's arrays checks that their parents exist (zarr reads the root's and `parts/`'s
    # metadata); nothing else outside the part is read.
    outside = {k for k in read if not k.startswith("parts/00003/")}
    assert outside <= {"zarr.json", "parts/zarr.json"}, read
