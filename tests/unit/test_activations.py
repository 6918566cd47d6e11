"""The activations the fast path runs in place: identical to the model's module, and only those."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn
from transformers import activations

from vzcore.ops.activations import inplace_activation

RECOGNISED = [
    activations.GELUActivation(),
    activations.SiLUActivation(),
    activations.GELUTanh(),
    nn.GELU(),
    nn.GELU(approximate="tanh"),
    nn.SiLU(),
    nn.ReLU(),
    torch.nn.functional.gelu,
    torch.nn.functional.silu,
    torch.nn.functional.relu,
]


@pytest.mark.parametrize("act", RECOGNISED, ids=lambda a: getattr(a, "__name__", type(a).__name__))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_in_place_equals_the_module(act, dtype):
    x = (torch.randn(64, 97, generator=torch.Generator().manual_seed(0)) * 4).to(dtype)
    fn = inplace_activation(act)
    assert fn is not None
    y = x.clone()
    out = fn(y)
    assert out.data_ptr() == y.data_ptr()  # in place: no second `[pairs, F]` tensor
    assert torch.equal(out, act(x))


def _hooked() -> nn.Module:
    m = nn.SiLU()
    m.register_forward_hook(lambda *_: None)
    return m


def _replaced() -> nn.Module:
    m = nn.ReLU()
    m.forward = lambda x: x * 2  # type: ignore[method-assign]
    return m


@pytest.mark.parametrize(
    "act",
    [
        activations.NewGELUActivation(),  # a Python formula: not the torch kernel's rounding
        activations.GELUActivation(use_gelu_python=True),
        activations.QuickGELUActivation(),
        nn.Tanh(),
        _hooked(),
        _replaced(),
        functools.partial(torch.nn.functional.gelu, approximate="tanh"),
        torch.tanh,
    ],
    ids=lambda a: getattr(a, "__name__", type(a).__name__),
)
def test_others_run_the_model_module(act):
    assert inplace_activation(act) is None
