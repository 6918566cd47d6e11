"""Mixtures of experts: a zeroed pair may route to other experts than its clean token, which is why
their feed-forward has no factored form and value zeroing runs the block's own router per pair."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch
import transformers
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import vzcore
from tests.harness.models import TINY_CONFIGS
from tests.support import sample_ids
from vzcore.ops.paths import feed_forward_width, zeroing_path
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


class _LiveBytes(TorchDispatchMode):
    """Track the bytes of the live tensors that operations create, and their peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self.storages: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in self.storages:
                key, size = t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()
                self.storages.add(key)
                self.live += size
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, key, size)
        return out

    def _free(self, key: int, size: int) -> None:
        if key in self.storages:
            self.storages.discard(key)
            self.live -= size


@pytest.mark.parametrize("kind", ["llama", "mixtral", "qwen2_moe", "qwen3_moe"])
def test_the_pair_budget_bounds_a_feed_forwards_memory(tiny_models, kind):
    handle = tiny_models[kind]
    ffn = handle.family.blocks(handle.model)[0].mlp
    d, rows = handle.model.config.hidden_size, 2048
    with torch.no_grad(), _LiveBytes() as measured:
        ffn(torch.randn(1, rows, d))
    assert 0 < measured.peak <= feed_forward_width(ffn, d) * 4 * rows  # float32: never under-counted


@pytest.mark.parametrize("kind", ["mixtral", "qwen2_moe", "qwen3_moe"])
def test_the_pair_budget_counts_the_experts_a_row_runs_not_every_expert(kind):
    def width(experts: int) -> int:
        cfg = TINY_CONFIGS[kind]()
        setattr(cfg, "num_local_experts" if kind == "mixtral" else "num_experts", experts)
        model = transformers.AutoModel.from_config(cfg)
        return feed_forward_width(model.layers[0].mlp, cfg.hidden_size)

    # only the routing grows with the experts (logits and masks: 5 floats per expert), not the chosen two's work
    assert width(16) - width(4) == 5 * 12
