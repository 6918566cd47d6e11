"""The map contract (`vzcore.maps`) and the store's packing of it: sites, shapes, layers, the v3 flat layout."""

from __future__ import annotations

import numpy as np
import pytest

from vzcore.maps import TOKENS, Site, Stream, layer_position, map_entries, resolve_layers, self_site, valid_entries
from vzcore.result import ScoreResult
from vzcore.store.layout import pack_maps, packed_size, unpack_maps

DECODER, ENCODER = Stream("decoder"), Stream("encoder")


def test_todays_one_site_is_self_attention_over_the_tokens():
    for causal in (False, True):
        site = self_site(causal)
        assert (site.name, site.targets, site.sources, site.causal, site.square) == (
            "self",
            TOKENS,
            TOKENS,
            causal,
            True,
        )
    cross = Site("cross", targets=DECODER, sources=ENCODER)
    assert not cross.square and not cross.causal
    with pytest.raises(ValueError, match="only a stream read by itself can be causal"):
        Site("cross", targets=DECODER, sources=ENCODER, causal=True)
    assert Stream("encoder", "frames").kind == "frames"  # a speech encoder's positions
    with pytest.raises(ValueError, match="kind 'pixels' is not one of"):
        Stream("image", "pixels")


def test_valid_entries_are_every_entry_or_the_causal_lower_triangle():
    np.testing.assert_array_equal(valid_entries(2, 3, False), np.ones((2, 3), dtype=bool))
    np.testing.assert_array_equal(valid_entries(3, 3, True), [[1, 0, 0], [1, 1, 0], [1, 1, 1]])
    assert (map_entries(2, 3, False), map_entries(3, 3, True), map_entries(0, 0, True)) == (6, 6, 0)
    for call in (valid_entries, map_entries):
        with pytest.raises(ValueError, match="a causal map is square; got 2 targets and 3 sources"):
            call(2, 3, True)


# Maps `[2, 3, 3]` holding 0..17, and their flat values as the v3 layout stores them: every entry,
# layer after layer, row after row; causal maps their lower triangle only, row after row.
KNOWN = np.arange(18, dtype=np.float32).reshape(2, 3, 3)
GOLDEN = {
    False: list(range(18)),
    True: [0, 3, 4, 6, 7, 8, 9, 12, 13, 15, 16, 17],
}


@pytest.mark.parametrize("causal", [False, True])
def test_self_maps_keep_the_v3_flat_layout(causal):
    maps = np.tril(KNOWN) if causal else KNOWN
    flat = pack_maps(maps, causal)
    assert flat.dtype == np.float32 and flat.tolist() == GOLDEN[causal]
    assert packed_size(3, 3, 2, causal) == len(GOLDEN[causal])
    np.testing.assert_array_equal(unpack_maps(np.asarray(GOLDEN[causal], np.float32), 3, 3, 2, causal), maps)


def test_a_non_square_map_round_trips_and_is_never_packed_causal():
    maps = np.random.default_rng(0).random((2, 3, 5), dtype=np.float32)  # `[layers, decoder tokens, encoder tokens]`
    flat = pack_maps(maps, causal=False)
    assert flat.size == packed_size(3, 5, 2, causal=False) == 30
    np.testing.assert_array_equal(unpack_maps(flat, 3, 5, 2, causal=False), maps)
    with pytest.raises(ValueError, match="a causal map is square"):
        pack_maps(maps, causal=True)
    with pytest.raises(ValueError, match="a causal map is square"):
        unpack_maps(flat[:12], 3, 5, 2, causal=True)
    with pytest.raises(ValueError, match="a causal map is square"):
        packed_size(3, 5, 2, causal=True)
    with pytest.raises(ValueError, match="expected 30 values for 5 targets, 3 sources"):
        unpack_maps(flat[:-1], 5, 3, 2, causal=False)


def test_one_rule_for_layer_indices():
    assert resolve_layers(None, 4) == [0, 1, 2, 3]
    assert resolve_layers(-1, 4) == [3]
    assert resolve_layers([2, -1, -2, 3], 4) == [2, 3]  # in the order given, without repeats
    with pytest.raises(ValueError, match=r"layer -5 out of range: the model has 4 layers \(0..3\)"):
        resolve_layers([0, -5], 4)
    assert layer_position(-1, 30, [0, 15, 29]) == 2  # -1: the model's last block, wherever it is stored
    with pytest.raises(ValueError, match=r"layer 14 is not in the store; it holds layers \[0, 15, 29\]"):
        layer_position(-16, 30, [0, 15, 29], "the store")


def test_a_result_documents_its_site_and_holds_self_maps_only():
    maps = np.full((1, 2, 2), 0.5, dtype=np.float32)
    r = ScoreResult(tokens=["a", "b"], token_ids=[1, 2], word_ids=None, layers=[0], scores={"m": maps})
    assert r.site == self_site(causal=False) and r.n == 2
    with pytest.raises(ValueError, match="a ScoreResult holds one token list; site 'cross' relates decoder to encoder"):
        ScoreResult(["a"], [1], None, [0], {}, site=Site("cross", DECODER, ENCODER))
