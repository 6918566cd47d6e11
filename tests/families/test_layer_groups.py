"""Long inputs that fit: a batch is scored group of layers by group (`vzcore.scoring`), so the captured
tensors at any moment are one group's, sized by the memory budget, and the maps do not change."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch
import transformers
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import vzcore
import vzcore.capture
import vzcore.scoring
from tests.support import sample_ids
from vzcore.methods.registry import get_method
from vzcore.ops.block import BlockView
from vzcore.ops.paths import ZeroingPlan
from vzcore.reference import reference_value_zeroing
from vzcore.scoring import group_bytes_per_layer, layer_groups


class _LiveBytes(TorchDispatchMode):
    """Track the bytes of the live storages that operations create (not views of their inputs, so a
    model's weights are never counted), and their peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self.storages: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        given = tree_flatten((args, kwargs))[0]
        inputs = {t.untyped_storage().data_ptr() for t in given if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
            if key and key not in self.storages and key not in inputs:
                self.storages.add(key)
                self.live += size
                self.peak = max(self.peak, self.live)
                weakref.finalize(storage, self._free, key, size)  # when its last view goes
        return out

    def _free(self, key: int, size: int) -> None:
        if key in self.storages:
            self.storages.discard(key)
            self.live -= size


def _deep_llama(layers: int, heads: int = 8) -> vzcore.ModelHandle:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    return vzcore.load_model(transformers.AutoModel.from_config(cfg, attn_implementation="eager").eval())


def _one_layer_groups(monkeypatch) -> list[list[list[int]]]:
    """Force groups of one layer whatever the budget; return the list of each call's groups."""
    seen: list[list[list[int]]] = []

    def singles(layers, per_layer, budget):
        seen.append([[la] for la in layers])
        return seen[-1]

    monkeypatch.setattr(vzcore.scoring, "layer_groups", singles)
    return seen


def test_layer_groups_fill_the_budget():
    assert layer_groups([0, 1, 2, 3, 4], 10, 25) == [[0, 1], [2, 3], [4]]
    assert layer_groups([0, 3, 7], 10, 5) == [[0], [3], [7]]  # a layer over the budget goes alone
    assert layer_groups([2, 5], 1, 10**9) == [[2, 5]]
    # SmolLM2 at n = 2048 (9 heads), one method: one layer is 2.4× a 64 MiB budget, so a group is one layer
    assert group_bytes_per_layer(1, 2048, 9, 1) > 2 * 64 * 2**20


@pytest.mark.parametrize("targets", [None, [[1, 4, 8], [0, 5]]])
def test_scoring_a_layer_at_a_time_changes_no_map(tiny, targets, monkeypatch):
    """Every method the family takes, padded batch of two texts: one group of every layer against
    groups of one layer (the clean pass paused after each block, its captures dropped)."""
    methods = [
        m
        for m in vzcore.list_methods()
        if get_method(m).supports(tiny.family)
        and (targets is not None or not get_method(m).needs_targets)
        and m != "integrated_gradients"  # the same per-text rerun as grad_x_input, 20 times slower
    ]
    texts = [sample_ids(70, 9), sample_ids(71, 6)]
    whole = vzcore.score(tiny, texts, methods=methods, targets=targets)
    seen = _one_layer_groups(monkeypatch)
    split = vzcore.score(tiny, texts, methods=methods, targets=targets)
    assert seen and all(len(groups) == tiny.num_layers for groups in seen)
    for a, b in zip(whole, split, strict=True):
        for m in methods:
            np.testing.assert_allclose(b.scores[m], a.scores[m], atol=1e-6, rtol=0, err_msg=m)


def test_span_maps_are_scored_by_group_too(tiny, monkeypatch):
    """Spans (`score(spans=...)`) go through the same groups: a layer at a time gives the same maps."""
    from vzcore.ops.span_zeroing import spans_unsupported

    if spans_unsupported(tiny.family):
        pytest.skip(f"{tiny.family.name}: {spans_unsupported(tiny.family)}")
    ids, spans = sample_ids(73, 9), [[0, 1], [2], [4, 6, 7]]
    whole = vzcore.score(tiny, [ids], methods=["value_zeroing", "attention"], spans=spans)[0]
    seen = _one_layer_groups(monkeypatch)
    split = vzcore.score(tiny, [ids], methods=["value_zeroing", "attention"], spans=spans)[0]
    assert seen == [[[la] for la in range(tiny.num_layers)]]
    for m in ("value_zeroing", "attention"):
        np.testing.assert_allclose(split.scores[m], whole.scores[m], atol=1e-6, rtol=0, err_msg=m)


def test_groups_of_a_deep_model_stay_exact_against_the_reference(monkeypatch):
    handle = _deep_llama(6)
    ids = sample_ids(72, 11)
    _one_layer_groups(monkeypatch)
    got = vzcore.score(handle, [ids], methods=["value_zeroing", "value_zeroing_rollout"], layers=[1, 4])[0]
    ref = reference_value_zeroing(handle, ids, layers=list(range(5)))
    np.testing.assert_allclose(got.scores["value_zeroing"], ref[[1, 4]], atol=1e-5, rtol=0)
    rolled = [ref[0]]
    for m in ref[1:]:
        rolled.append(m @ rolled[-1])
    np.testing.assert_allclose(got.scores["value_zeroing_rollout"], np.stack(rolled)[[1, 4]], atol=1e-5, rtol=0)


def test_a_group_stops_the_pass_after_its_last_layer():
    handle = _deep_llama(6)
    blocks = handle.family.blocks(handle.model)
    ran: list[int] = []
    hooks = [b.register_forward_pre_hook(lambda m, a, i=i: ran.append(i)) for i, b in enumerate(blocks)]
    try:
        vzcore.score(handle, [sample_ids(73, 7)], layers=[2])
    finally:
        for h in hooks:
            h.remove()
    assert ran == [0, 1, 2]  # blocks 3–5 never ran


def _peak(handle: vzcore.ModelHandle, ids: list[int], budget: int, methods: list[str]) -> int:
    vzcore.score(handle, [ids[:4]], methods=methods)  # the weights' cached products are the model's, not the text's
    with torch.no_grad(), _LiveBytes() as measured:
        vzcore.score(handle, [ids], methods=methods, memory_budget=budget)
    return measured.peak


def test_live_tensor_bytes_follow_the_budget_not_the_layers():
    """Peak bytes of live torch tensors while one 96-token text is scored (the maps handed back are
    NumPy arrays, outside this count): a 12-layer model peaks where a 6-layer one does, far below
    holding every layer's attention, and the peak grows with the budget, within it plus a few
    layers' attention weights (the model's own attention and the captured one)."""
    n, heads, methods = 96, 8, ["value_zeroing", "attention_rollout"]
    ids = sample_ids(74, n)
    shallow, deep = _deep_llama(6, heads), _deep_llama(12, heads)  # 6: a full group at every budget below
    one_layer = heads * n * n * 4  # float32 attention weights of one layer: 288 KiB
    peaks = {}
    for budget in (2**20, 2**22):
        low, high = _peak(shallow, ids, budget, methods), _peak(deep, ids, budget, methods)
        assert high <= 1.05 * low, (budget, low, high)
        assert high <= 2 * budget + 4 * one_layer, (budget, high)
        if budget == 2**20:  # groups of one layer: capturing every layer first holds 3.4 MiB of weights alone
            assert high < 12 * one_layer, (budget, high)
        peaks[budget] = high
    assert peaks[2**20] < peaks[2**22]
    # a budget that holds every layer takes them in one group: the old single pass, and its memory
    assert _peak(deep, ids, 2**26, methods) > 12 * one_layer


@pytest.mark.parametrize("kind", ["llama", "bert", "qwen2"])
def test_sources_in_blocks_change_no_score(tiny_models, kind):
    """A budget below every source's per-head projections (`BlockAlgebra.projected`) cuts the sources
    into blocks, each projected once for the row chunks that see it: the maps stay the reference's."""
    handle = tiny_models[kind]
    ids = sample_ids(75, 13)
    t = torch.tensor([ids])
    cap = vzcore.capture.capture_layers(handle, t, torch.ones_like(t), [0])[0]
    plan = ZeroingPlan.build(BlockView(handle.family, handle.family.blocks(handle.model)[0], cap))
    assert plan.path == "factored"
    budget = 12 * plan.state.bytes_per_source()  # a quarter of it: three sources a block, a few pairs a chunk
    assert len(plan.source_blocks(len(ids), budget)) == 5
    assert plan.source_blocks(len(ids), 13 * plan.state.bytes_per_source()) == [slice(0, 13)]  # fits: one block
    small = vzcore.score(handle, [ids], memory_budget=budget)[0].scores["value_zeroing"]
    np.testing.assert_allclose(small, reference_value_zeroing(handle, ids), atol=1e-5, rtol=0)
    texts, rows = [ids, sample_ids(76, 6)], [[1, 4, 5, 9, -1], [0, 2, 5]]
    got = vzcore.score(handle, texts, targets=rows, memory_budget=budget, batch_size=2)
    ref = vzcore.score(handle, texts, targets=rows, memory_budget=2**30, batch_size=1)
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_allclose(a.scores["value_zeroing"], b.scores["value_zeroing"], atol=1e-5, rtol=0)
