"""The registry of scoring methods: a name, a small frozen config, and a compute function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch

from vzcore.families import LAYOUTS, PARALLEL, POST_NORM, PRE_NORM, SANDWICH, FamilySpec, Layout

__all__ = [
    "Method",
    "UnknownMethodError",
    "check_applicable",
    "get_method",
    "list_methods",
    "register_method",
    "register_rollout",
    "split_options",
]


@dataclass(frozen=True)
class Method:
    """A registered method: `compute(batch, config) -> [b, layers, n, n]` maps of `batch.layers`, NaN in
    unscored rows; each layer's map depends on that layer's captures alone, so a caller may compute
    the layers in groups. A rollout (`rolls`) has no compute of its own: its maps are its base
    method's maps on every row, composed across layers one layer at a time (`vzcore.ops.rollout`).
    """

    name: str
    config_cls: type
    compute: Callable[[Any, Any], torch.Tensor] | None
    needs_all_rows: bool  # rollouts multiply full maps of every earlier layer
    description: str
    needs_targets: bool = False  # gradient methods: one backward pass per target row, so no full maps
    # The block layouts the method's algebra is exact for; `None`: any block (the method reads only
    # the model's own attention weights, values or gradients).
    layouts: tuple[Layout, ...] | None = None
    rolls: str | None = None  # a rollout: the method whose all-row maps it composes across layers
    identity_weight: float = 0.0  # a rollout's `w` in `(1 − w) M + w I`
    # The method reruns the model from token ids (gradients through the embeddings, an LM head's
    # prediction): refused for audio encoders, which read samples and have no tokens.
    reads_tokens: bool = False

    def supports(self, family: FamilySpec) -> bool:
        """Whether the method is exact for the blocks of a `FamilySpec` (their layout is one it knows)
        and reads the model's kind of input."""
        if self.reads_tokens and family.audio:
            return False
        return self.layouts is None or family.shape.layout in self.layouts


_METHODS: dict[str, Method] = {}

# How a refusal names the blocks a method is defined for.
_ONLY = {
    POST_NORM: "post-norm encoders only (a norm closes the attention sum)",
    PRE_NORM: "pre-norm blocks only",
    SANDWICH: "sandwich-norm blocks only",
    PARALLEL: "parallel blocks only",
}
# Why a published decomposition does not carry over to a layout (the refusal says it).
_WHY = {
    POST_NORM: "",
    PRE_NORM: "",
    SANDWICH: " (a norm on the attention output rescales every source's part by the whole output's "
    "statistics before the residual add: no published decomposition covers it)",
    PARALLEL: " (the residual stream also receives the feed-forward of the block input: no published "
    "decomposition of attention plus residual covers it)",
}


class UnknownMethodError(KeyError):
    """No method is registered under that name."""

    def __str__(self) -> str:
        return str(self.args[0])


def register_method(
    name: str,
    config_cls: type,
    *,
    needs_all_rows: bool = False,
    needs_targets: bool = False,
    layouts: tuple[Layout, ...] | None = None,
    reads_tokens: bool = False,
):
    """Register `compute` under `name`; refuses to overwrite an existing method.

    `needs_targets`: the method scores only the rows of `score(targets=...)` and refuses full maps;
    `layouts`: the block layouts (`vzcore.families.LAYOUTS`) the method is exact for; it refuses
    the others, and every block shape that has no layout. `None`: any block. `reads_tokens`: the method
    reruns the model from token ids, so audio encoders are refused.
    """

    def decorate(compute: Callable[[Any, Any], torch.Tensor]):
        if name in _METHODS:
            raise ValueError(f"method {name!r} is already registered")
        doc = (compute.__doc__ or "").strip().splitlines()
        _METHODS[name] = Method(
            name,
            config_cls,
            compute,
            needs_all_rows,
            doc[0] if doc else "",
            needs_targets,
            layouts,
            reads_tokens=reads_tokens,
        )
        return compute

    return decorate


def register_rollout(
    name: str, of: str, description: str, *, identity_weight: float = 0.0, layouts: tuple[Layout, ...] | None = None
) -> None:
    """Register `name` as the rollout of the registered method `of` (same config): `R^l = M^l @ R^{l−1}`
    of `of`'s maps on every row, each layer first mixed with `identity_weight` of the identity."""
    if name in _METHODS:
        raise ValueError(f"method {name!r} is already registered")
    base = get_method(of)
    _METHODS[name] = Method(
        name,
        base.config_cls,
        None,
        True,
        description,
        layouts=layouts,
        rolls=of,
        identity_weight=identity_weight,
    )


def list_methods() -> dict[str, str]:
    """Return every registered method's name with its one-line description."""
    return {name: m.description for name, m in sorted(_METHODS.items())}


def get_method(name: str) -> Method:
    """Return the method registered as `name`, or raise listing the choices."""
    try:
        return _METHODS[name]
    except KeyError:
        raise UnknownMethodError(f"unknown method {name!r}; choose from: {', '.join(sorted(_METHODS))}") from None


def check_applicable(methods: list[Method], family: FamilySpec, targets_given: bool, model: str = "the model") -> None:
    """Raise `ValueError` unless every method can serve this call: targets-only methods need
    `targets=`, and a method with `layouts` needs blocks of one of them (an unknown block shape is
    refused, never guessed). Cheap: run it before any work."""
    tokens = [m.name for m in methods if m.reads_tokens and family.audio]
    if tokens:
        fit = ", ".join(name for name, m in sorted(_METHODS.items()) if m.supports(family))
        raise ValueError(
            f"{', '.join(tokens)} cannot score {model!r}: they rerun the model from token ids and explain a "
            f"token prediction, and a {family.name} audio encoder reads samples and predicts no tokens; "
            f"use one of {fit}"
        )
    need = [m.name for m in methods if m.needs_targets]
    if need and not targets_given:
        raise ValueError(
            f"{', '.join(need)} score target rows only (one backward pass per target): pass targets=[...] "
            "(rows for every text, or one list per text), e.g. targets=[-1] or the [MASK] position"
        )
    wrong = [m.name for m in methods if not m.supports(family)]
    if not wrong:
        return
    layout = family.shape.layout
    if layout is None:
        free = ", ".join(name for name, m in sorted(_METHODS.items()) if m.layouts is None)
        raise ValueError(
            f"{', '.join(wrong)} cannot score {model!r} exactly: its {family.name} blocks have "
            f"{', '.join(family.shape.unsupported())}, which no exact algebra here handles yet "
            f"(it knows post-norm and pre-norm blocks); these methods take any block: {free}"
        )
    wanted = {x for m in methods if not m.supports(family) for x in m.layouts or ()}
    fit = ", ".join(name for name, m in sorted(_METHODS.items()) if m.supports(family) and not m.needs_targets)
    raise ValueError(
        f"{', '.join(wrong)} are defined for {' and '.join(_ONLY[x] for x in LAYOUTS if x in wanted)}; "
        f"{model!r} is a {layout} {family.name} model{_WHY[layout]}: use one of {fit}"
    )


def split_options(methods: list[Method], options: dict[str, Any]) -> dict[str, Any]:
    """Build each method's config from `options`; an option no method takes is an error."""
    used: set[str] = set()
    configs = {}
    for m in methods:
        names = {f.name for f in fields(m.config_cls)}
        mine = {k: v for k, v in options.items() if k in names}
        used |= mine.keys()
        configs[m.name] = m.config_cls(**mine)
    unknown = set(options) - used
    if unknown:
        takes = sorted({f.name for m in methods for f in fields(m.config_cls)})
        raise TypeError(
            f"unknown option(s) {sorted(unknown)} for methods {[m.name for m in methods]}; they take: {takes}"
        )
    return configs
