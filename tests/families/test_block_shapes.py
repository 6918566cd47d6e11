"""Block shapes as data: a spec places each norm by position and kind. A family whose shape the
algebra knows is just data (a Gemma-1 spec, built here and registered nowhere, is exact); one it
does not know (Gemma 2: norms on the attention and feed-forward outputs) is refused with the
reason, before any work, by every method whose algebra depends on the shape."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import transformers

import vzcore
from tests.support import TINY, VOCAB, sample_ids
from vzcore.capture import capture_layers
from vzcore.families import BlockShape, Norm, NormKind
from vzcore.families.llama import LLAMA
from vzcore.methods.registry import get_method
from vzcore.ops.block import BlockView, UnsupportedBlockError
from vzcore.ops.zeroing import BlockAlgebra
from vzcore.reference import reference_value_zeroing

OFFSET = NormKind.RMS_NORM_OFFSET

# Gemma 1 blocks are LLaMA's with Gemma's RMSNorm (`1 + γ`): the same paths, another norm kind.
GEMMA = replace(
    LLAMA,
    name="gemma",
    model_types=("gemma",),
    shape=BlockShape(before_attn=Norm("input_layernorm", OFFSET), before_ffn=Norm("post_attention_layernorm", OFFSET)),
)
# Gemma 2 adds norms on the attention and feed-forward outputs, before each residual add.
GEMMA2 = replace(
    LLAMA,
    name="gemma2",
    model_types=("gemma2",),
    shape=BlockShape(
        before_attn=Norm("input_layernorm", OFFSET),
        on_attn_out=Norm("post_attention_layernorm", OFFSET),
        before_ffn=Norm("pre_feedforward_layernorm", OFFSET),
        on_ffn_out=Norm("post_feedforward_layernorm", OFFSET),
    ),
)


def _handle(config_cls, spec) -> vzcore.ModelHandle:
    torch.manual_seed(0)
    cfg = config_cls(vocab_size=VOCAB, num_key_value_heads=2, max_position_embeddings=64, head_dim=8, **TINY)
    model = transformers.AutoModel.from_config(cfg, attn_implementation="eager").eval()
    with torch.no_grad():  # Gemma's γ starts at 0 (a scale of 1): perturb it so the kind matters
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return vzcore.ModelHandle(model=model, tokenizer=None, family=spec, name=spec.name)


@pytest.fixture(scope="module")
def gemma() -> vzcore.ModelHandle:
    return _handle(transformers.GemmaConfig, GEMMA)


@pytest.fixture(scope="module")
def gemma2() -> vzcore.ModelHandle:
    return _handle(transformers.Gemma2Config, GEMMA2)


def test_a_known_shape_with_another_norm_kind_is_just_data(gemma):
    ids = sample_ids(40, 8)
    fast = vzcore.score(gemma, [ids])[0].scores["value_zeroing"]
    np.testing.assert_allclose(fast, reference_value_zeroing(gemma, ids), atol=1e-5, rtol=0)
    # The kind is read from the spec, never from the module: called a plain RMSNorm, the scores go wrong.
    plain = replace(GEMMA, shape=replace(GEMMA.shape, before_ffn=Norm("post_attention_layernorm", NormKind.RMS_NORM)))
    wrong = vzcore.score(replace(gemma, family=plain), [ids])[0].scores["value_zeroing"]
    assert np.abs(wrong - fast).max() > 1e-3


def test_an_unknown_shape_is_refused_with_the_reason_before_any_work(gemma2, monkeypatch):
    def no_capture(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(vzcore.api, "capture_layers", no_capture)
    shaped = [m for m in vzcore.list_methods() if get_method(m).layouts is not None]
    assert {"value_zeroing", "value_zeroing_rollout", "alti", "globenc", "attention_norm_res"} <= set(shaped)
    for method in shaped:
        with pytest.raises(
            ValueError,
            match=rf"{method} cannot score 'gemma2' exactly: its gemma2 blocks have a norm on the attention output "
            r"\(post_attention_layernorm\), a norm on the feed-forward output \(post_feedforward_layernorm\)",
        ):
            vzcore.score(gemma2, [[5, 6, 7]], methods=["attention", method])


def test_methods_that_read_only_the_model_take_any_shape(gemma2):
    free = [m for m in vzcore.list_methods() if get_method(m).layouts is None and not get_method(m).needs_targets]
    assert {"attention", "attention_rollout", "attention_norm"} <= set(free)
    maps = vzcore.score(gemma2, [sample_ids(41, 6)], methods=free)[0].scores
    for method in free:
        np.testing.assert_allclose(maps[method].sum(-1), 1.0, atol=1e-5, err_msg=method)


@torch.no_grad()
def test_the_fast_path_refuses_an_unknown_shape_itself(gemma2):
    ids = torch.tensor([sample_ids(42, 5)])
    block = GEMMA2.blocks(gemma2.model)[0]
    seen = {}
    hook = block.pre_feedforward_layernorm.register_forward_pre_hook(lambda m, a: seen.setdefault("s", a[0]))
    try:
        cap = capture_layers(gemma2, ids, torch.ones_like(ids), [0])[0]
    finally:
        hook.remove()
    view = BlockView(GEMMA2, block, cap)
    # The view still knows the state after attention: the attention output through its own norm, plus x.
    torch.testing.assert_close(view.state_after_attention, seen["s"], atol=1e-6, rtol=0)
    with pytest.raises(UnsupportedBlockError, match="gemma2 blocks have a norm on the attention output"):
        BlockAlgebra.build(view)
    with pytest.raises(UnsupportedBlockError, match="gemma2 blocks have"):
        view.ffn_residual(view.state_after_attention)
