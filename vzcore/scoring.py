"""One padded batch scored group of layers by group of layers, so that long texts fit.

The clean pass (`vzcore.capture.stream_layers`) stops after each group of blocks while the methods
score it, then drops the group's captures: at any moment the captured tensors are one group's
(`O(group · H · n²)`), not every layer's (`O(L · H · n²)`: 4.5 GiB of attention weights for
SmolLM2 at n = 2048). The group is sized from the memory budget, so short texts take every layer
in one group (one pass, as before) and long ones a layer at a time. Rollouts compose each layer's
all-row map with the product so far as the layer arrives (one `[n, n]` product per text). Besides
the model and one group's tensors, what stays is the output: each text's `[layers, n, n]` maps,
written in place as each group is scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch

from vzcore.batch import Batch
from vzcore.capture import LayerCapture, stream_layers
from vzcore.loading import ModelHandle
from vzcore.methods.registry import Method, get_method
from vzcore.ops.rollout import rollout_step

__all__ = ["group_bytes_per_layer", "layer_groups", "score_batch"]


def group_bytes_per_layer(b: int, n: int, heads: int, methods: int) -> int:
    """Return the bytes one layer of a group holds while it is scored: its captured float32 attention
    weights `[b, H, n, n]` and, per method, its float64 maps with their temporaries (the raw
    distances, their normalised and placed copies: about five `[b, n, n]` float64 arrays)."""
    return b * n * n * (4 * heads + 40 * max(1, methods))


def layer_groups(layers: Sequence[int], per_layer: int, budget: int) -> list[list[int]]:
    """Cut ascending `layers` into consecutive groups of as many layers as `budget` bytes hold at
    `per_layer` bytes each (at least one)."""
    size = max(1, budget // max(1, per_layer))
    return [list(layers[k : k + size]) for k in range(0, len(layers), size)]


def score_batch(
    handle: ModelHandle,
    ids: torch.Tensor,
    mask: torch.Tensor,
    lengths: torch.Tensor,
    rows: torch.Tensor,
    row_mask: torch.Tensor,
    layers: list[int],
    methods: Sequence[Method],
    configs: dict[str, Any],
    memory_budget: int,
    precision: Callable[[], AbstractContextManager] | None = None,
) -> dict[str, list[np.ndarray]]:
    """Score one padded batch (`ids`, `mask`: `[b, n]` on the model's device, or an audio family's input
    values `[b, samples]` as `vzcore.capture.model_inputs` takes them; `lengths`, `rows`, `row_mask` on
    the CPU) and return, per method, each input's float32 maps `[len(layers), n_k, n_k]`."""
    token_ids = None if handle.family.audio else ids  # what the gradient methods rerun the model from
    b, n = ids.shape[0], int(lengths.max())  # an audio family's `ids` are samples: positions are frames
    index = {layer: k for k, layer in enumerate(layers)}
    sizes = [int(x) for x in lengths]
    out = {m.name: [np.full((len(layers), s, s), np.nan, dtype=np.float32) for s in sizes] for m in methods}
    plain = [m for m in methods if m.rolls is None and not m.needs_targets]
    rolled = [m for m in methods if m.rolls is not None]
    last = max(layers)
    needed = set(layers) if plain else set()
    if rolled:
        needed |= set(range(last + 1))
    products: dict[str, list[torch.Tensor | None]] = {m.name: [None] * b for m in rolled}

    def keep(name: str, at: list[int], maps: torch.Tensor) -> None:
        got = maps.float().cpu().numpy()  # `[b, len(at), n, n]`
        for k, s in enumerate(sizes):
            for j, layer in enumerate(at):
                out[name][k][index[layer]] = got[k, j, :s, :s]

    def on_group(captures: dict[int, LayerCapture]) -> None:
        here = sorted(captures)
        batch = Batch(
            handle,
            captures,
            lengths,
            rows,
            row_mask,
            [la for la in here if la in index],
            memory_budget,
            precision,
            input_ids=token_ids,
            attention_mask=mask,
        )
        for m in plain:
            if batch.layers:
                assert m.compute is not None
                keep(m.name, batch.layers, m.compute(batch, configs[m.name]))
        for m in rolled:
            compose(m, batch, [la for la in here if la <= last])

    def compose(m: Method, batch: Batch, at: list[int]) -> None:
        """Fold layers `at` of the base method's all-row maps into each text's product; keep the reported ones."""
        base = get_method(m.rolls or "")
        assert base.compute is not None
        maps = base.compute(batch.all_rows(at), configs[m.name]).cpu()  # `[b, len(at), n, n]`
        for k, s in enumerate(sizes):
            scored = rows[k][row_mask[k]]
            for j, layer in enumerate(at):
                product = rollout_step(products[m.name][k], maps[k, j, :s, :s].nan_to_num(0.0), m.identity_weight)
                products[m.name][k] = product
                if layer in index:
                    out[m.name][k][index[layer]][scored.numpy()] = product[scored].float().numpy()

    if needed:
        per_layer = group_bytes_per_layer(b, n, handle.geometry.heads, len(plain) + len(rolled))
        groups = layer_groups(sorted(needed), per_layer, memory_budget)
        stream_layers(handle, ids, mask, groups, on_group)
    targeted = [m for m in methods if m.needs_targets]
    if targeted:  # they rerun the model with grad themselves; no capture is read
        batch = Batch(
            handle,
            {},
            lengths,
            rows,
            row_mask,
            layers,
            memory_budget,
            precision,
            input_ids=token_ids,
            attention_mask=mask,
        )
        for m in targeted:
            assert m.compute is not None
            keep(m.name, layers, m.compute(batch, configs[m.name]))
    return out
