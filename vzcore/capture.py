"""The clean forward pass: what each block saw and computed, taken from the model by hooks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from vzcore.loading import ModelHandle

__all__ = ["LayerCapture", "capture_layers", "eager_attention", "hooks"]


@dataclass
class LayerCapture:
    """One block's clean tensors for a padded batch (`b` texts, `n` positions, `H` query heads)."""

    x: torch.Tensor  # block input `[b, n, d]` (residual stream)
    attn: torch.Tensor  # attention weights `[b, H, n, n]`, from the model's own attention
    values: torch.Tensor  # value vectors `[b, n, H_kv, d_h]`, bias included
    attn_out: torch.Tensor  # attention output after W_O and its bias `[b, n, d]`
    out: torch.Tensor  # block output `[b, n, d]`
    closing_in: torch.Tensor | None = None  # input of the norm closing the block `[b, n, d]`, where it has one


@contextmanager
def hooks(handles: list) -> Iterator[None]:
    """Remove every hook handle in `handles` on exit, even on error."""
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        handles.clear()


@contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """Switch `model` to eager attention (which returns weights) for the duration, then back."""
    before = model.config._attn_implementation
    if before == "eager":
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def _value_vectors(handle: ModelHandle, proj_out: torch.Tensor) -> torch.Tensor:
    return handle.family.value_part(proj_out, handle.geometry)


@torch.no_grad()
def capture_layers(
    handle: ModelHandle,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    layers: Sequence[int],
) -> dict[int, LayerCapture]:
    """Run one clean pass over `input_ids: [b, n]` and return the tensors of the chosen `layers`."""
    spec, model = handle.family, handle.model
    blocks = spec.blocks(model)
    got: dict[int, dict[str, torch.Tensor]] = {i: {} for i in layers}
    handles: list = []

    def keep(i: int, key: str, pick):
        def hook(module, args, *rest):
            got[i][key] = pick(args, *rest)

        return hook

    def block_input(args, kwargs):
        return args[0] if args else kwargs["hidden_states"]

    def attn_weights(args, output):
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if not isinstance(weights, torch.Tensor):
            raise RuntimeError("the attention module returned no weights; eager attention is required")
        return weights

    with hooks(handles), eager_attention(model):
        for i in layers:
            block = blocks[i]
            handles.append(block.register_forward_pre_hook(keep(i, "x", block_input), with_kwargs=True))
            handles.append(
                block.register_forward_hook(keep(i, "out", lambda a, o: o[0] if isinstance(o, tuple) else o))
            )
            handles.append(block.get_submodule(spec.attention).register_forward_hook(keep(i, "attn", attn_weights)))
            handles.append(
                block.get_submodule(spec.value_proj).register_forward_hook(
                    keep(i, "values", lambda a, o: _value_vectors(handle, o))
                )
            )
            handles.append(
                block.get_submodule(spec.out_proj).register_forward_hook(keep(i, "attn_out", lambda a, o: o))
            )
            closing = spec.shape.after_ffn_sum
            if closing is not None:
                handles.append(
                    block.get_submodule(closing.path).register_forward_pre_hook(
                        keep(i, "closing_in", lambda a, kw: a[0] if a else kw["input"]), with_kwargs=True
                    )
                )
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return {i: LayerCapture(**got[i]) for i in layers}
