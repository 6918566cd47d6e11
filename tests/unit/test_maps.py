"""The map contract (`vzcore.maps`) and the store's packing of it: sites, shapes, layers, the v3 flat layout."""

from __future__ import annotations

import numpy as np
import pytest

from vzcore.maps import TOKENS, Site, Stream, layer_position, map_entries, resolve_layers, self_site, valid_entries

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


def test_one_rule_for_layer_indices():
    assert resolve_layers(None, 4) == [0, 1, 2, 3]
    assert resolve_layers(-1, 4) == [3]
    assert resolve_layers([2, -1, -2, 3], 4) == [2, 3]  # in the order given, without repeats
    with pytest.raises(ValueError, match=r"layer -5 out of range: the model has 4 layers \(0..3\)"):
        resolve_layers([0, -5], 4)
    assert layer_position(-1, 30, [0, 15, 29]) == 2  # -1: the model's last block, wherever it is stored
    with pytest.raises(ValueError, match=r"layer 14 is not in the store; it holds layers \[0, 15, 29\]"):
        layer_position(-16, 30, [0, 15, 29], "the store")
