"""Every site of every encoder–decoder family: the fast path equals the one-block-call-per-column
reference (single sources and spans), zeroing nothing changes nothing, causal rows ignore the future."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.harness.models import tiny_pair
from vzcore.capture import capture_sites
from vzcore.families.encdec import SITE_NAMES, encdec_family_for
from vzcore.ops.distances import cosine_distance
from vzcore.ops.rollout import normalize_rows
from vzcore.ops.sites import SiteBlock, site_distances, site_path
from vzcore.reference import reference_site_zeroing

TOL = 1e-5


def fast_maps(model, inputs, site, spans=None, memory_budget=64 * 2**20, factored=None, window=None) -> np.ndarray:
    spec = encdec_family_for(model.config)
    layers = list(range(len(spec.blocks(model, site))))
    caps = capture_sites(model, spec, inputs, [site], {site: layers})
    index = None if spans is None else [torch.tensor(s) for s in spans]
    with torch.no_grad():
        raw = [
            site_distances(
                SiteBlock(spec, site, spec.blocks(model, site)[i], caps[(site, i)]),
                cosine_distance,
                spans=index,
                causal=site == "decoder" and spans is None,
                memory_budget=memory_budget,
                factored=factored,
                window=window,
            )
            for i in layers
        ]
    return normalize_rows(torch.stack(raw))[0].numpy()


@pytest.mark.parametrize("path", ["auto", "generic"])
@pytest.mark.parametrize("site", SITE_NAMES)
def test_site_matches_reference(tiny_s2s, site, path):
    """`auto`: the factored path where it applies (encoder and cross sites), else the generic one."""
    inputs = tiny_pair(tiny_s2s, seed=1, n_src=9, n_tgt=7)
    fast = fast_maps(tiny_s2s, inputs, site, factored=False if path == "generic" else None)
    ref = reference_site_zeroing(tiny_s2s, encdec_family_for(tiny_s2s.config), inputs, site)
    n_src = 16 if tiny_s2s.config.model_type == "whisper" else 9
    rows, cols = (n_src, n_src) if site == "encoder" else (7, 7 if site == "decoder" else n_src)
    assert fast.shape == ref.shape == (2, rows, cols)
    np.testing.assert_allclose(fast, ref, atol=TOL, rtol=0)
    assert ref.max() > 0.05  # the maps are not trivially zero
    if site == "decoder":
        assert np.all(np.triu(fast, k=1) == 0)
        np.testing.assert_array_equal(fast[:, 0, 0], 1.0)


@pytest.mark.parametrize("path", ["auto", "generic"])
@pytest.mark.parametrize("site", ["encoder", "cross"])
def test_a_window_keeps_the_first_positions_exactly(tiny_s2s, site, path):
    """Only the first `w` encoder positions (an utterance in Whisper's padded window): as targets at the
    encoder site, as sources at both; each kept entry is the reference's, rows normalised over the kept."""
    inputs = tiny_pair(tiny_s2s, seed=4, n_src=9, n_tgt=7)
    w = 5
    window = (w if site == "encoder" else 7, w)
    fast = fast_maps(tiny_s2s, inputs, site, factored=False if path == "generic" else None, window=window)
    spans = [[j] for j in range(w)]
    ref = reference_site_zeroing(tiny_s2s, encdec_family_for(tiny_s2s.config), inputs, site, spans=spans)
    assert fast.shape == (2, window[0], w)
    np.testing.assert_allclose(fast, ref[:, : window[0]], atol=TOL, rtol=0)


@pytest.mark.parametrize("site", SITE_NAMES)
def test_span_zeroing_matches_reference(tiny_s2s, site):
    inputs = tiny_pair(tiny_s2s, seed=2, n_src=9, n_tgt=7)
    spans = [[0, 1, 2], [3], [4, 6], [5]]  # a gap inside one span: a span is any set of positions
    fast = fast_maps(tiny_s2s, inputs, site, spans=spans)
    ref = reference_site_zeroing(tiny_s2s, encdec_family_for(tiny_s2s.config), inputs, site, spans=spans)
    assert fast.shape[-1] == 4
    np.testing.assert_allclose(fast, ref, atol=TOL, rtol=0)


def test_small_memory_budget_gives_the_same_maps(tiny_s2s):
    inputs = tiny_pair(tiny_s2s, seed=3, n_src=6, n_tgt=5)
    for site in SITE_NAMES:
        for factored in (None, False):
            big = fast_maps(tiny_s2s, inputs, site, factored=factored)
            small = fast_maps(tiny_s2s, inputs, site, memory_budget=1, factored=factored)  # one row per chunk
            np.testing.assert_allclose(small, big, atol=TOL, rtol=0)


def test_every_family_has_a_factored_path_at_its_encoder_and_cross_sites(tiny_s2s):
    spec = encdec_family_for(tiny_s2s.config)
    inputs = tiny_pair(tiny_s2s, seed=7)
    caps = capture_sites(tiny_s2s, spec, inputs, SITE_NAMES, {s: [0] for s in SITE_NAMES})
    blocks = {site: SiteBlock(spec, site, spec.blocks(tiny_s2s, site)[0], caps[(site, 0)]) for site in SITE_NAMES}
    for site, block in blocks.items():
        assert (block.single_stack_view() is None) == (site == "decoder"), site
        assert site_path(spec, site) == ("generic" if site == "decoder" else "factored")
    with pytest.raises(ValueError, match="no factored path"):
        site_distances(blocks["decoder"], cosine_distance, factored=True)  # a cross-attention follows


def test_zeroing_nothing_changes_nothing(tiny_s2s):
    spec = encdec_family_for(tiny_s2s.config)
    for site in SITE_NAMES:
        ref = reference_site_zeroing(tiny_s2s, spec, tiny_pair(tiny_s2s, seed=4), site, zero=False)
        assert np.all(ref == 0), site


def test_future_decoder_tokens_change_no_earlier_row(tiny_s2s):
    full = tiny_pair(tiny_s2s, seed=5, n_tgt=8)
    short = {**full, "decoder_input_ids": full["decoder_input_ids"][:, :5]}
    for site in ("decoder", "cross"):
        np.testing.assert_allclose(
            fast_maps(tiny_s2s, full, site)[:, :5, : (5 if site == "decoder" else None)],
            fast_maps(tiny_s2s, short, site),
            atol=TOL,
            rtol=0,
        )


def test_no_hook_is_left_behind(tiny_s2s):
    def count(model):
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

    before = count(tiny_s2s)
    inputs = tiny_pair(tiny_s2s, seed=6)
    fast_maps(tiny_s2s, inputs, "cross")
    reference_site_zeroing(tiny_s2s, encdec_family_for(tiny_s2s.config), inputs, "decoder")
    assert count(tiny_s2s) == before
