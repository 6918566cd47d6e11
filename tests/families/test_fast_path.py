"""The fast path's own arithmetic, on every family: zeroing nothing changes nothing, and its clean
outputs are the model's block outputs. (The conformance suite compares it with the reference.)"""

from __future__ import annotations

import torch

import vzcore
from tests.support import sample_ids
from vzcore.capture import capture_layers
from vzcore.ops.distances import cosine_distance
from vzcore.ops.zeroing import BlockAlgebra, zeroed_block_outputs


def test_every_registered_family_has_a_tiny_model(tiny_models):
    assert {h.family.name for h in tiny_models.values()} == set(vzcore.list_families())


@torch.no_grad()
def test_zeroing_nothing_on_the_fast_path_changes_nothing(tiny):
    ids = torch.tensor([sample_ids(5, 7)], device=tiny.device)
    spec, blocks = tiny.family, tiny.model.get_submodule(tiny.family.layers)
    captures = capture_layers(tiny, ids, torch.ones_like(ids), list(range(tiny.num_layers)))
    n = ids.shape[1]
    rows = torch.arange(n)[None]
    for layer, cap in captures.items():
        alg = BlockAlgebra.build(blocks[layer], spec, cap)
        # No attention from any target to any source: zeroing a source's values removes nothing.
        nothing = torch.zeros_like(cap.attn)
        zeroed, clean = zeroed_block_outputs(blocks[layer], spec, alg, nothing, rows.to(cap.attn.device), None)
        assert cosine_distance(zeroed, clean).abs().max() < 1e-12, layer
        # With the real weights, the pair arithmetic's clean rows are the model's own block outputs.
        _, clean = zeroed_block_outputs(blocks[layer], spec, alg, cap.attn, rows.to(cap.attn.device), None)
        torch.testing.assert_close(clean[:, 0], cap.out, atol=1e-5, rtol=1e-5)
