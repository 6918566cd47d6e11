"""Mixtures of experts: a zeroed pair may route to other experts than its clean token, which is why
their feed-forward has no factored form and value zeroing runs the block's own router per pair."""

from __future__ import annotations

import numpy as np
import pytest

import vzcore
from tests.support import sample_ids
from vzcore.ops.paths import zeroing_path
from vzcore.reference import reference_value_zeroing


@pytest.mark.parametrize("kind", ["mixtral", "qwen2_moe", "qwen3_moe"])
def test_a_zeroed_pair_may_route_to_other_experts_and_the_scores_stay_exact(tiny_models, kind):
    handle = tiny_models[kind]
    assert zeroing_path(handle.family) == "generic"
    ids = sample_ids(60, 9)
    gate = handle.family.blocks(handle.model)[0].mlp.gate
    chosen = []  # the experts each call's rows route to, sorted: `[n, k]`
    hook = gate.register_forward_hook(lambda m, a, out: chosen.append(out[-1].sort(-1).values.clone()))
    try:
        ref = reference_value_zeroing(handle, ids, layers=[0])
    finally:
        hook.remove()
    clean, zeroed = chosen[1], chosen[2:]  # after the model's own pass: the clean block call, then one per source
    assert len(zeroed) == len(ids)
    assert any((z != clean).any() for z in zeroed)
    fast = vzcore.score(handle, [ids], layers=[0])[0].scores["value_zeroing"]
    np.testing.assert_allclose(fast, ref, atol=1e-5, rtol=0)
