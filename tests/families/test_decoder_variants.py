"""Families whose block shape depends on a config field: the spec is chosen per config, before any
weights load, and each variant is exact (GPT-NeoX without the parallel residual is pre-norm; OPT-350m
is post-norm)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import transformers

import vzcore
from tests.support import TINY, VOCAB, sample_ids
from vzcore.families import PARALLEL, POST_NORM, PRE_NORM, family_for
from vzcore.families.parallel import GPT_NEOX
from vzcore.ops.paths import zeroing_path
from vzcore.reference import reference_value_zeroing


def _handle(cfg: transformers.PretrainedConfig) -> vzcore.ModelHandle:
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(cfg, attn_implementation="eager").eval()
    with torch.no_grad():  # LayerNorm starts at identity, biases at zero: perturb them
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return vzcore.load_model(model)


@pytest.fixture(scope="module")
def sequential_neox() -> vzcore.ModelHandle:
    cfg = transformers.GPTNeoXConfig(vocab_size=VOCAB, max_position_embeddings=64, use_parallel_residual=False, **TINY)
    return _handle(cfg)


@pytest.fixture(scope="module")
def post_norm_opt() -> vzcore.ModelHandle:
    cfg = transformers.OPTConfig(
        vocab_size=VOCAB,
        ffn_dim=64,
        max_position_embeddings=64,
        word_embed_proj_dim=32,
        pad_token_id=1,
        do_layer_norm_before=False,
        **TINY,
    )
    return _handle(cfg)


def test_the_spec_follows_the_config():
    neox = transformers.GPTNeoXConfig(**TINY)
    assert family_for(neox).shape.layout == PARALLEL
    assert family_for(transformers.GPTNeoXConfig(use_parallel_residual=False, **TINY)).shape.layout == PRE_NORM
    assert family_for(transformers.OPTConfig()).shape.layout == PRE_NORM
    post = family_for(transformers.OPTConfig(do_layer_norm_before=False))
    assert post.shape.layout == POST_NORM and post.final_norm is None


@pytest.mark.parametrize("which", ["sequential_neox", "post_norm_opt"])
def test_each_variant_matches_the_reference(which, request):
    handle = request.getfixturevalue(which)
    assert zeroing_path(handle.family) == "factored"
    ids = sample_ids(50, 9)
    fast = vzcore.score(handle, [ids])[0].scores["value_zeroing"]
    np.testing.assert_allclose(fast, reference_value_zeroing(handle, ids), atol=1e-5, rtol=0)
    if handle.family.causal:
        short = vzcore.score(handle, [ids[:5]])[0].scores["value_zeroing"]
        np.testing.assert_allclose(fast[:, :5, :5], short, atol=1e-5, rtol=0)


def test_the_parallel_reading_of_a_sequential_block_would_be_wrong(sequential_neox):
    ids = sample_ids(51, 9)
    fast = vzcore.score(sequential_neox, [ids])[0].scores["value_zeroing"]
    wrong = vzcore.score(replace(sequential_neox, family=GPT_NEOX), [ids])[0].scores["value_zeroing"]
    assert np.abs(wrong - fast).max() > 1e-3
