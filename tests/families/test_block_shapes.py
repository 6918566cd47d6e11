"""Block shapes as data: a spec places each norm by position and kind. A family whose shape the
algebra knows is just data (Gemma 1 is LLaMA with another norm kind); a sandwich-norm family
(Gemma 2: norms on the attention and feed-forward outputs) is exact through the generic path,
while methods whose published decomposition has no form for it refuse with the reason, before any
work. A shape no layout covers is refused by every method that depends on the shape."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import vzcore
from tests.support import sample_ids
from vzcore.capture import capture_layers
from vzcore.families import PARALLEL, SANDWICH, BlockShape, Norm, NormKind
from vzcore.families.gemma import GEMMA, GEMMA2
from vzcore.families.llama import LLAMA
from vzcore.methods.registry import get_method
from vzcore.ops.block import BlockView, UnsupportedBlockError
from vzcore.ops.paths import zeroing_path
from vzcore.ops.zeroing import BlockAlgebra
from vzcore.reference import reference_value_zeroing

NORM_BASED = ("alti", "alti_rollout", "attention_norm_res", "attention_norm_res_ln", "globenc", "globenc_rollout")


@pytest.fixture(scope="module")
def gemma(tiny_models) -> vzcore.ModelHandle:
    return tiny_models["gemma"]


@pytest.fixture(scope="module")
def gemma2(tiny_models) -> vzcore.ModelHandle:
    return tiny_models["gemma2"]


def test_a_known_shape_with_another_norm_kind_is_just_data(gemma):
    assert gemma.family is GEMMA and zeroing_path(GEMMA) == "factored"
    ids = sample_ids(40, 8)
    fast = vzcore.score(gemma, [ids])[0].scores["value_zeroing"]
    np.testing.assert_allclose(fast, reference_value_zeroing(gemma, ids), atol=1e-5, rtol=0)
    # The kind is read from the spec, never from the module: called a plain RMSNorm, the scores go wrong.
    plain = replace(GEMMA, shape=replace(GEMMA.shape, before_ffn=Norm("post_attention_layernorm", NormKind.RMS_NORM)))
    wrong = vzcore.score(replace(gemma, family=plain), [ids])[0].scores["value_zeroing"]
    assert np.abs(wrong - fast).max() > 1e-3


def test_a_sandwich_shape_takes_the_generic_path_and_a_pre_norm_reading_would_be_wrong(gemma2):
    assert GEMMA2.shape.layout == SANDWICH and zeroing_path(GEMMA2) == "generic"
    ids = sample_ids(43, 9)
    fast = vzcore.score(gemma2, [ids])[0].scores["value_zeroing"]
    np.testing.assert_allclose(fast, reference_value_zeroing(gemma2, ids), atol=1e-5, rtol=0)
    # Forcing LLaMA's pre-norm reading (the factored path) onto Gemma 2 blocks gives plausible garbage.
    forced = replace(
        LLAMA, shape=replace(GEMMA.shape, before_ffn=Norm("pre_feedforward_layernorm", NormKind.RMS_NORM_OFFSET))
    )
    wrong = vzcore.score(replace(gemma2, family=forced), [ids])[0].scores["value_zeroing"]
    assert np.abs(wrong - fast).max() > 1e-2


def test_norm_based_methods_refuse_a_sandwich_shape_with_the_reason_before_any_work(gemma2, monkeypatch):
    def no_capture(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(vzcore.scoring, "stream_layers", no_capture)
    shaped = [m for m in vzcore.list_methods() if get_method(m).layouts is not None]
    assert set(NORM_BASED) | {"value_zeroing", "value_zeroing_rollout"} == set(shaped)
    for method in NORM_BASED:
        with pytest.raises(
            ValueError, match=rf"{method} are defined for .*'Gemma2Model' is a sandwich gemma2 model \(a norm"
        ):
            vzcore.score(gemma2, [[5, 6, 7]], methods=["attention", method])


def test_an_unknown_shape_is_refused_with_the_reason_before_any_work(gemma2, monkeypatch):
    # A parallel block with a norm on its attention output: no layout covers it.
    odd = replace(GEMMA2, name="odd", shape=replace(GEMMA2.shape, parallel=True))
    assert odd.shape.layout is None
    monkeypatch.setattr(vzcore.scoring, "stream_layers", lambda *a, **k: pytest.fail("the model ran"))
    for method in ("value_zeroing", "alti"):
        with pytest.raises(
            ValueError,
            match=rf"{method} cannot score 'Gemma2Model' exactly: its odd blocks have attention and feed-forward "
            r"running in parallel, a norm on the attention output \(post_attention_layernorm\)",
        ):
            vzcore.score(replace(gemma2, family=odd), [[5, 6, 7]], methods=["attention", method])


def test_a_parallel_shape_is_a_layout():
    assert BlockShape(before_attn=Norm("ln_1", NormKind.LAYER_NORM), parallel=True).layout == PARALLEL


def test_methods_that_read_only_the_model_take_any_shape(gemma2):
    free = [m for m in vzcore.list_methods() if get_method(m).layouts is None and not get_method(m).needs_targets]
    assert {"attention", "attention_rollout", "attention_norm"} <= set(free)
    maps = vzcore.score(gemma2, [sample_ids(41, 6)], methods=free)[0].scores
    for method in free:
        np.testing.assert_allclose(maps[method].sum(-1), 1.0, atol=1e-5, err_msg=method)


@torch.no_grad()
def test_the_factored_path_refuses_a_sandwich_shape_itself(gemma2):
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
    # And its own modules after attention give the block's output.
    torch.testing.assert_close(view.after_attention(cap.x[0], cap.attn_out[0]), cap.out[0], atol=1e-6, rtol=0)
    with pytest.raises(UnsupportedBlockError, match="gemma2 blocks have a norm on the attention output"):
        BlockAlgebra.build(view)
    with pytest.raises(UnsupportedBlockError, match="gemma2 blocks have"):
        view.ffn_residual(view.state_after_attention)
