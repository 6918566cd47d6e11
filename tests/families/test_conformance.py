"""The conformance suite every family passes, on tiny seeded models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vzcore
from tests.support import sample_ids
from vzcore.reference import reference_value_zeroing

TOL = 1e-5


def applicable(handle) -> list[str]:
    """Every registered method the handle's family supports (post-norm-only methods skip decoders)."""
    return [m for m in vzcore.list_methods() if vzcore.methods.get_method(m).supports(handle.family)]


def score_every_method(handle, ids: list[int], targets: list[int] | None = None, **kwargs):
    """Score `ids` with every applicable method in one `ScoreResult` (see `score_texts_every_method`)."""
    return score_texts_every_method(handle, [ids], targets, **kwargs)[0]


def score_texts_every_method(
    handle, texts: list[list[int]], targets: list[int] | None = None, gradient_rows: list[int] | None = None, **kwargs
):
    """Score `texts` with every applicable method. Those that need targets (one backward pass per
    target row, twenty for integrated gradients) get `targets`, else `gradient_rows`, else every row."""
    names = applicable(handle)
    plain = [m for m in names if not vzcore.methods.get_method(m).needs_targets]
    results = vzcore.score(handle, texts, methods=plain, targets=targets, **kwargs)
    needy = [m for m in names if m not in plain]
    if needy:
        rows = targets or gradient_rows or [list(range(len(t))) for t in texts]
        more = vzcore.score(handle, texts, methods=needy, targets=rows, **kwargs)
        for result, extra in zip(results, more, strict=True):
            result.scores.update(extra.scores)
    return results


def test_fast_path_matches_reference(tiny):
    ids = sample_ids(1, 9)
    fast = vzcore.score(tiny, [ids])[0].scores["value_zeroing"]
    ref = reference_value_zeroing(tiny, ids)
    assert fast.shape == ref.shape == (2, 9, 9)
    np.testing.assert_allclose(fast, ref, atol=TOL, rtol=0)


def test_padding_changes_nothing(tiny):
    texts = [sample_ids(2, 5), sample_ids(3, 11), sample_ids(4, 8)]
    batched = vzcore.score(tiny, texts, methods=["value_zeroing", "attention", "attention_norm"], batch_size=3)
    for text, got in zip(texts, batched, strict=True):
        alone = vzcore.score(tiny, [text], methods=["value_zeroing", "attention", "attention_norm"])[0]
        for method in got.scores:
            np.testing.assert_allclose(got.scores[method], alone.scores[method], atol=TOL, rtol=0)
        np.testing.assert_allclose(got.scores["value_zeroing"], reference_value_zeroing(tiny, text), atol=TOL, rtol=0)


def test_padding_changes_no_method(tiny):
    texts = [sample_ids(2, 5), sample_ids(3, 11), sample_ids(4, 8)]
    rows = [0, 3, -1]  # the gradient methods: a few rows (the first, a middle one, the last) show any padding leak
    batched = score_texts_every_method(tiny, texts, gradient_rows=rows, batch_size=3)
    for text, got in zip(texts, batched, strict=True):
        alone = score_every_method(tiny, text, gradient_rows=rows)
        assert set(got.scores) == set(applicable(tiny))
        for method in got.scores:
            np.testing.assert_allclose(got.scores[method], alone.scores[method], atol=TOL, rtol=0, err_msg=method)


def test_zeroing_nothing_changes_nothing(tiny):
    ref = reference_value_zeroing(tiny, sample_ids(5, 6), zero=False)
    assert np.all(ref == 0)


def test_rows_sum_to_one_and_causal_rows_ignore_the_future(tiny):
    result = score_every_method(tiny, sample_ids(6, 10))
    assert set(result.scores) == set(applicable(tiny))
    for method, maps in result.scores.items():
        assert not np.isnan(maps).any(), method
        np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-5, err_msg=method)
        assert (maps >= 0).all(), method
        if tiny.family.causal:
            assert np.all(np.triu(maps, k=1) == 0), method
            np.testing.assert_array_equal(maps[:, 0, 0], 1.0)


def test_future_tokens_do_not_change_causal_scores(tiny):
    if not tiny.family.causal:
        pytest.skip("encoders see the whole text")
    ids = sample_ids(7, 10)
    short = vzcore.score(tiny, [ids[:6]])[0].scores["value_zeroing"]
    full = vzcore.score(tiny, [ids])[0].scores["value_zeroing"]
    np.testing.assert_allclose(full[:, :6, :6], short, atol=TOL, rtol=0)


def test_target_rows_equal_the_full_maps_rows(tiny):
    ids = sample_ids(8, 9)
    methods = applicable(tiny)
    full = score_every_method(tiny, ids, gradient_rows=[0, 2, 5, 8])  # gradient methods: rows scored apart anyway
    part = score_every_method(tiny, ids, targets=[2, -1])
    assert part.scored_rows.tolist() == [i in (2, 8) for i in range(9)]
    for method in methods:
        np.testing.assert_allclose(part.scores[method][:, [2, 8]], full.scores[method][:, [2, 8]], atol=TOL, rtol=0)
        assert np.isnan(part.scores[method][:, [0, 1, 3, 4, 5, 6, 7]]).all(), method


def test_layer_selection_equals_the_full_maps_layers(tiny):
    ids = sample_ids(9, 7)
    full = vzcore.score(tiny, [ids], methods=["value_zeroing", "value_zeroing_rollout"])[0]
    last = vzcore.score(tiny, [ids], methods=["value_zeroing", "value_zeroing_rollout"], layers=[-1])[0]
    assert last.layers == [1]
    for method in full.scores:
        np.testing.assert_allclose(last.scores[method][0], full.scores[method][1], atol=TOL, rtol=0)


def test_no_hook_is_left_behind(tiny):
    def count_hooks(model):
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

    before = count_hooks(tiny.model)
    score_every_method(tiny, sample_ids(10, 5))
    reference_value_zeroing(tiny, sample_ids(10, 5))
    assert count_hooks(tiny.model) == before


def test_eager_and_sdpa_loading_give_the_same_scores(tiny, tiny_builder):
    kind = tiny.config.model_type
    if not tiny.model._supports_sdpa:
        pytest.skip(f"{kind} has no SDPA attention")
    ids = sample_ids(11, 8)
    sdpa = vzcore.load_model(tiny_builder(kind, attn="sdpa"))
    eager = vzcore.score(tiny, [ids], methods=["value_zeroing", "attention"])[0]
    other = vzcore.score(sdpa, [ids], methods=["value_zeroing", "attention"])[0]
    for method in eager.scores:
        np.testing.assert_allclose(other.scores[method], eager.scores[method], atol=TOL, rtol=0)
    assert sdpa.config._attn_implementation == "sdpa"  # switched for the clean pass only


def test_final_norm_option_matches_reference(tiny):
    if tiny.family.final_norm is None:
        pytest.skip("post-norm blocks already end in a norm")
    ids = sample_ids(12, 7)
    fast = vzcore.score(tiny, [ids], final_norm=True)[0].scores["value_zeroing"]
    ref = reference_value_zeroing(tiny, ids, final_norm=True)
    np.testing.assert_allclose(fast, ref, atol=TOL, rtol=0)
    raw = vzcore.score(tiny, [ids])[0].scores["value_zeroing"]
    np.testing.assert_allclose(fast[0], raw[0], atol=TOL, rtol=0)  # only the last layer changes
    assert np.abs(fast[-1] - raw[-1]).max() > 1e-4


def test_small_memory_budget_gives_the_same_scores(tiny):
    texts = [sample_ids(13, 9), sample_ids(14, 6)]
    big = vzcore.score(tiny, texts, batch_size=2)
    small = vzcore.score(tiny, texts, batch_size=2, memory_budget=1)
    for a, b in zip(big, small, strict=True):
        np.testing.assert_allclose(a.scores["value_zeroing"], b.scores["value_zeroing"], atol=TOL, rtol=0)


def test_euclidean_distance_matches_reference(tiny):
    ids = sample_ids(15, 6)
    fast = vzcore.score(tiny, [ids], distance="euclidean")[0].scores["value_zeroing"]
    np.testing.assert_allclose(fast, reference_value_zeroing(tiny, ids, distance="euclidean"), atol=TOL, rtol=0)


def test_bfloat16_is_close_to_float32(tiny):
    ids = sample_ids(16, 8)
    full = vzcore.score(tiny, [ids])[0].scores["value_zeroing"]
    low = vzcore.score(tiny, [ids], precision="bfloat16")[0].scores["value_zeroing"]
    assert np.abs(low - full).max() < 0.05


@pytest.mark.parametrize("dtype", [torch.float32])
def test_rollout_is_the_product_of_layer_maps(tiny, dtype):
    result = vzcore.score(tiny, [sample_ids(17, 7)], methods=["value_zeroing", "value_zeroing_rollout"])[0]
    vz = result.scores["value_zeroing"].astype(np.float64)
    np.testing.assert_allclose(result.scores["value_zeroing_rollout"][1], vz[1] @ vz[0], atol=1e-6)
    np.testing.assert_allclose(result.scores["value_zeroing_rollout"][0], vz[0], atol=1e-6)
