"""Norms by kind, as the scoring algebra reads them (`vzcore.ops.norms`): each kind's linear form
equals its module, ε is read by one rule, and a block shape is a known layout or says why not."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn
from transformers.models.gemma2.modeling_gemma2 import Gemma2RMSNorm
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from vzcore.families import (
    LAYOUTS,
    PARALLEL,
    POST_NORM,
    PRE_NORM,
    SANDWICH,
    BlockShape,
    Norm,
    NormKind,
    family_specs,
    list_families,
)
from vzcore.families.bert import BERT
from vzcore.families.gpt2 import GPT2
from vzcore.families.llama import LLAMA
from vzcore.ops.norms import NormParams, norm_eps

D = 16


def _perturbed(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))  # away from the identity init (Gemma's γ starts at 0)
    return module


NORMS = {
    NormKind.LAYER_NORM: lambda: nn.LayerNorm(D, eps=1e-5),
    NormKind.RMS_NORM: lambda: LlamaRMSNorm(D, eps=1e-5),
    NormKind.RMS_NORM_OFFSET: lambda: Gemma2RMSNorm(D, eps=1e-5),
}


@pytest.mark.parametrize("kind", list(NormKind))
def test_each_kind_linearised_at_clean_statistics_adds_up_to_its_module(kind):
    module = _perturbed(NORMS[kind]())
    params = NormParams.of(Norm("norm", kind), module)
    s = torch.randn(3, 5, D)
    out = module(s)  # the RMSNorm modules compute in float32 whatever the input: compare in float32
    torch.testing.assert_close(params(s), out, atol=1e-6, rtol=0)
    # Split each row into parts; at the row's clean statistics the norm is linear in them (plus β).
    parts = torch.randn(3, 5, 4, D, dtype=torch.float64)
    parts[:, :, -1] = s.double() - parts[:, :, :-1].sum(2)
    linear = params.linear(parts, params.inverse_scale(s.double())[:, :, None]).sum(2)
    beta = 0 if params.bias is None else params.bias.double()
    torch.testing.assert_close(linear + beta, out.double(), atol=1e-6, rtol=0)


def test_reading_gemmas_norm_as_a_plain_rmsnorm_is_wrong():
    module = _perturbed(Gemma2RMSNorm(D))
    s = torch.randn(4, D)
    plain = NormParams.of(Norm("norm", NormKind.RMS_NORM), module)
    assert (plain(s) - module(s)).abs().max() > 0.1  # the kind is what makes it exact, not the module's type


def test_eps_is_read_by_one_rule():
    assert norm_eps(LlamaRMSNorm(D, eps=1e-3)) == 1e-3  # `variance_epsilon`
    assert norm_eps(nn.LayerNorm(D, eps=1e-4)) == 1e-4  # `eps`
    assert norm_eps(Gemma2RMSNorm(D, eps=1e-2)) == 1e-2
    with pytest.raises(TypeError, match="Linear has neither `variance_epsilon` nor `eps`"):
        norm_eps(nn.Linear(D, D))


def test_every_family_has_a_known_layout():
    assert BERT.shape.layout == POST_NORM
    assert GPT2.shape.layout == LLAMA.shape.layout == PRE_NORM
    layouts = {family.name: family.shape.layout for family in family_specs()}
    assert set(layouts) == set(list_families()) and None not in layouts.values()
    assert layouts["distilbert"] == layouts["deberta-v2"] == layouts["albert"] == POST_NORM
    assert all(layout in LAYOUTS for layout in layouts.values())


def test_sandwich_and_parallel_shapes_are_layouts_and_their_odd_mixtures_say_why():
    rms = NormKind.RMS_NORM_OFFSET
    gemma2 = BlockShape(
        before_attn=Norm("input_layernorm", rms),
        on_attn_out=Norm("post_attention_layernorm", rms),
        before_ffn=Norm("pre_feedforward_layernorm", rms),
        on_ffn_out=Norm("post_feedforward_layernorm", rms),
    )
    assert gemma2.layout == SANDWICH and gemma2.unsupported() == []
    parallel = BlockShape(before_attn=Norm("ln_1", NormKind.LAYER_NORM), parallel=True)
    assert parallel.layout == PARALLEL and parallel.unsupported() == []
    odd = replace(parallel, on_attn_out=Norm("post_attention_layernorm", rms))
    assert odd.layout is None
    assert odd.unsupported() == [
        "attention and feed-forward running in parallel",
        "a norm on the attention output (post_attention_layernorm)",
    ]
    closed = replace(gemma2, after_attn_sum=Norm("ln_a", rms))
    assert closed.unsupported() == [
        "a norm on the attention output (post_attention_layernorm) and a norm on the attention sum (ln_a)"
    ]


def test_shapes_without_a_layout_say_why():
    ln = NormKind.LAYER_NORM
    mixed = BlockShape(after_attn_sum=Norm("ln_a", ln), before_ffn=Norm("ln_f", ln))
    assert mixed.unsupported() == ["a norm before the feed-forward (ln_f) in a post-norm block"]
    assert BlockShape().unsupported() == ["no norm after attention"]
    closed = BlockShape(before_ffn=Norm("ln_2", ln), after_ffn_sum=Norm("ln_out", ln))
    assert closed.unsupported() == ["a closing norm (ln_out) in a pre-norm block"]
