"""The fast path's own arithmetic, on every family: zeroing nothing changes nothing, and its clean
outputs are the model's block outputs. (The conformance suite compares it with the reference.)"""

from __future__ import annotations

from dataclasses import replace

import torch

import vzcore
from tests.support import sample_ids
from vzcore.capture import capture_layers
from vzcore.families import NormKind
from vzcore.ops.block import BlockView
from vzcore.ops.distances import cosine_distance
from vzcore.ops.paths import ZeroingPlan
from vzcore.ops.zeroing import BlockAlgebra


def test_every_registered_family_has_a_tiny_model(tiny_models, tiny_audio_models):
    # audio encoders have tiny models of their own (tests/families/test_audio_encoders.py)
    handles = [*tiny_models.values(), *tiny_audio_models.values()]
    assert {h.family.name for h in handles} == set(vzcore.list_families())


@torch.no_grad()
def test_zeroing_nothing_on_the_fast_path_changes_nothing(tiny):
    ids = torch.tensor([sample_ids(5, 7)], device=tiny.device)
    spec, blocks = tiny.family, tiny.family.blocks(tiny.model)
    captures = capture_layers(tiny, ids, torch.ones_like(ids), list(range(tiny.num_layers)))
    n = ids.shape[1]
    rows = torch.arange(n)[None]
    for layer, cap in captures.items():
        plan = ZeroingPlan.build(BlockView(spec, blocks[layer], cap))
        # No attention from any target to any source: zeroing a source's values removes nothing.
        nothing = torch.zeros_like(cap.attn)
        zeroed, clean = plan.outputs(nothing, rows.to(cap.attn.device), None)
        assert cosine_distance(zeroed, clean).abs().max() < 1e-12, layer
        # With the real weights, the pair arithmetic's clean rows are the model's own block outputs.
        _, clean = plan.outputs(cap.attn, rows.to(cap.attn.device), None)
        torch.testing.assert_close(clean[:, 0], cap.out, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_the_folded_weights_follow_the_norm_kind(tiny_models):
    """The per-block cache of folded weights is keyed on the mix norm's kind: the same block read as
    an offset RMSNorm (`1 + γ`) folds other weights, never the cached ones."""
    handle = tiny_models["llama"]
    ids = torch.tensor([sample_ids(5, 6)], device=handle.device)
    cap = capture_layers(handle, ids, torch.ones_like(ids), [0])[0]
    block = handle.family.blocks(handle.model)[0]
    mix = handle.family.shape.before_ffn
    assert mix is not None
    offset = replace(mix, kind=NormKind.RMS_NORM_OFFSET)
    spec = replace(handle.family, shape=replace(handle.family.shape, before_ffn=offset))
    plain = BlockAlgebra.build(BlockView(handle.family, block, cap))
    shifted = BlockAlgebra.build(BlockView(spec, block, cap))
    # W diag(1 + γ) − W diag(γ) = W, for the gate projection's rows of clean states
    w_gate = block.get_submodule(handle.family.first_projs[0]).weight
    torch.testing.assert_close(shifted.proj_s[0] - plain.proj_s[0], plain.s @ w_gate.t(), atol=1e-5, rtol=1e-5)
