"""Chunks of pairs change no score: causal rows cut mid-text, each chunk computing only the sources
its rows see, give the reference's maps and those of one chunk holding every pair."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vzcore
from tests.support import sample_ids
from vzcore.capture import capture_layers
from vzcore.ops.block import BlockView
from vzcore.ops.pairs import visible_pair_chunks
from vzcore.ops.paths import ZeroingPlan
from vzcore.reference import reference_value_zeroing

TOL = 1e-5


def _bytes_per_pair(handle, ids: list[int]) -> int:
    t = torch.tensor([ids], device=handle.device)
    cap = capture_layers(handle, t, torch.ones_like(t), [0])[0]
    return ZeroingPlan.build(BlockView(handle.family, handle.family.blocks(handle.model)[0], cap)).bytes_per_pair


# one family per exact path: factored (LLaMA), parallel (GPT-NeoX), generic (Mixtral's routed experts)
@pytest.mark.parametrize("kind", ["llama", "gpt_neox", "mixtral", "gpt2"])
def test_causal_chunk_boundaries_change_nothing(tiny_models, kind):
    handle = tiny_models[kind]
    assert handle.family.causal
    ids = sample_ids(21, 13)
    n = len(ids)
    budget = 20 * _bytes_per_pair(handle, ids)  # 20 pairs a chunk: rows cut mid-text, several chunks
    chunks = visible_pair_chunks(torch.arange(1, n + 1)[None], 1, 20)
    assert len(chunks) > 3 and any(0 < r.start < n for _, r, _ in chunks)
    assert all(s.stop < n for _, r, s in chunks if r.stop < n)  # early chunks compute fewer than n sources
    small = vzcore.score(handle, [ids], memory_budget=budget)[0].scores["value_zeroing"]
    whole = vzcore.score(handle, [ids], memory_budget=2**30)[0].scores["value_zeroing"]
    np.testing.assert_allclose(small, whole, atol=TOL, rtol=0)
    np.testing.assert_allclose(small, reference_value_zeroing(handle, ids), atol=TOL, rtol=0)
    # targets (sorted, not contiguous) and a padded batch, cut the same way
    texts = [ids, sample_ids(22, 6)]
    rows = [1, 4, 5, 9, -1]
    got = vzcore.score(handle, texts, targets=[rows, [0, 2, 5]], memory_budget=budget, batch_size=2)
    ref = vzcore.score(handle, texts, targets=[rows, [0, 2, 5]], memory_budget=2**30, batch_size=1)
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_allclose(a.scores["value_zeroing"], b.scores["value_zeroing"], atol=TOL, rtol=0)
