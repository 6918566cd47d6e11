"""Activations the fast path recognises exactly, run in place on the first projections.

A recognised activation is computed by the same torch kernel the model's module calls, only into its
input's storage: the values are identical, and a chunk of pairs holds one `[pairs, F]` tensor per
projection instead of two. Anything else (a Python formula, a module with hooks, an activation not
listed) returns `None`, and the model's own module runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["inplace_activation"]

InPlace = Callable[[torch.Tensor], torch.Tensor]


def _gelu(approximate: str) -> InPlace:
    return lambda x: torch._C._nn.gelu_(x, approximate=approximate)  # type: ignore[attr-defined]


def _plain_module(act: Any) -> bool:
    """A module called as its class defines it: no hooks, no forward replaced on the instance."""
    if not isinstance(act, nn.Module):
        return False
    hooks = (act._forward_hooks, act._forward_pre_hooks, act._forward_hooks_with_kwargs)
    return "forward" not in vars(act) and not any(hooks)


def inplace_activation(act: Any) -> InPlace | None:
    """Return an in-place equivalent of the activation `act` (a module or function), or `None`."""
    if act is torch.nn.functional.gelu:
        return _gelu("none")
    if act is torch.nn.functional.silu:
        return _silu
    if act is torch.nn.functional.relu:
        return torch.relu_
    if not _plain_module(act):
        return None
    kind = type(act)
    if kind is nn.GELU:
        return _gelu(act.approximate)
    if kind is nn.SiLU:
        return _silu
    if kind is nn.ReLU:
        return torch.relu_
    try:  # transformers' wrappers, recognised by their class and what they call
        from transformers import activations
    except ImportError:  # pragma: no cover - the library needs transformers to load models at all
        return None
    if kind is activations.GELUActivation and act.act is torch.nn.functional.gelu:
        return _gelu("none")
    if kind is activations.SiLUActivation:
        return _silu
    if kind is activations.GELUTanh and isinstance(act.act, functools.partial):
        call = act.act
        if call.func is torch.nn.functional.gelu and not call.args and call.keywords == {"approximate": "tanh"}:
            return _gelu("tanh")
    return None


def _silu(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.silu(x, inplace=True)
