"""The plain value-zeroing reference: one block call per zeroed token, batch size 1.

This is the oracle the fast path is tested against (and the baseline the benchmark times), as in
the authors' code: zero token j's row of the value projection output, re-run the block on its
clean input, and compare every output with the clean one. Distances are computed in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vzcore.capture import LayerOrder, distinct, eager_attention, hooks, model_inputs
from vzcore.families.encdec import EncDecSpec
from vzcore.loading import ModelHandle
from vzcore.ops.distances import DISTANCES
from vzcore.ops.rollout import normalize_rows

__all__ = ["reference_site_zeroing", "reference_value_zeroing"]


@torch.no_grad()
def reference_value_zeroing(
    handle: ModelHandle,
    token_ids: Sequence[int] | Sequence[float],
    layers: Sequence[int] | None = None,
    distance: str = "cosine",
    final_norm: bool = False,
    zero: bool = True,
    spans: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """Return row-normalised value-zeroing maps `[layers, n, n]` for one text (float64); for an audio
    family `token_ids` are the input values `[samples]` and `n` the encoder's frames.

    With `zero=False` nothing is zeroed (every distance must then be 0). With `spans` column `c`
    zeroes every position of `spans[c]` at once: `[layers, n, len(spans)]`.
    """
    spec, model = handle.family, handle.model
    blocks = spec.blocks(model)
    layers = list(range(len(blocks))) if layers is None else list(layers)
    dtype = handle.dtype if spec.audio else torch.long
    inputs = torch.tensor([list(token_ids)], device=handle.device, dtype=dtype)
    calls: dict[int, tuple] = {}
    order = LayerOrder(blocks)  # a block shared by several layers (ALBERT) is called once per layer
    handles: list = []
    with hooks(handles):
        for block in distinct([blocks[i] for i in layers]):
            handles.append(
                block.register_forward_pre_hook(
                    lambda m, a, kw: calls.__setitem__(order.enter(m), (a, kw)), with_kwargs=True
                )
            )
        model(**model_inputs(handle, inputs, None if spec.audio else torch.ones_like(inputs)))
    final = model.get_submodule(spec.final_norm) if final_norm and spec.final_norm else None
    args, kwargs = calls[layers[0]]
    n = (args[0] if args else kwargs["hidden_states"]).shape[1]  # tokens, or the feature encoder's frames
    columns = [[j] for j in range(n)] if spans is None else [list(s) for s in spans]
    out = np.zeros((len(layers), n, len(columns)))
    for li, layer in enumerate(layers):
        last = final if layer == len(blocks) - 1 else None
        out[li] = _block_distances(handle, blocks[layer], calls[layer], columns, DISTANCES[distance], last, zero)
    maps, _ = normalize_rows(torch.from_numpy(out))
    return maps.numpy()


def _block_distances(
    handle: ModelHandle, block, call: tuple, columns: list[list[int]], distance, final, zero: bool
) -> np.ndarray:
    """Return `C[i, c]` of one block: re-run it on its clean input once per column c, the tokens `columns[c]` zeroed."""
    spec, geo = handle.family, handle.geometry
    args, kwargs = call
    zeroed_row: list[list[int] | None] = [None]

    def zero_value(module, inputs, output):
        j = zeroed_row[0]
        if j is None:
            return output
        output = output.clone()
        spec.value_part(output, geo)[:, j] = 0  # a view: only the value columns of a fused q, k, v projection
        return output

    def run(j: list[int] | None) -> torch.Tensor:
        zeroed_row[0] = j
        y = block(*args, **kwargs)
        y = y[0] if isinstance(y, tuple) else y
        return (final(y) if final is not None else y)[0]

    handles: list = []
    with hooks(handles):
        handles.append(block.get_submodule(spec.value_proj).register_forward_hook(zero_value))
        clean = run(None)
        out = np.zeros((clean.shape[0], len(columns)))
        for c, zeroed in enumerate(columns):
            out[:, c] = distance(run(zeroed if zero else None), clean).cpu().numpy()
    return out


@torch.no_grad()
def reference_site_zeroing(
    model: Any,
    spec: EncDecSpec,
    inputs: dict[str, torch.Tensor],
    site: str,
    layers: Sequence[int] | None = None,
    spans: Sequence[Sequence[int]] | None = None,
    distance: str = "cosine",
    zero: bool = True,
) -> np.ndarray:
    """Return row-normalised value-zeroing maps `[layers, n_t, columns]` of one site of an encoder–decoder
    (`spec`) for one input pair (`inputs`: a batch of one for the whole model, decoder ids included).

    One call of the site's block per column on its clean input: the site attention's value projection
    output has the column's source (or every source of the span `spans[c]`) set to zero.
    """
    blocks = spec.blocks(model, site)
    layers = list(range(len(blocks))) if layers is None else list(layers)
    calls: dict[int, tuple] = {}
    handles: list = []
    with hooks(handles), eager_attention(model):
        for i in layers:
            handles.append(
                blocks[i].register_forward_pre_hook(
                    lambda m, a, kw, i=i: calls.__setitem__(i, (a, kw)), with_kwargs=True
                )
            )
        model(**inputs, use_cache=False)
        maps = [
            _site_block_distances(spec, site, blocks[i], calls[i], spans, DISTANCES[distance], zero) for i in layers
        ]
    normed, _ = normalize_rows(torch.from_numpy(np.stack(maps)))
    return normed.numpy()


def _site_block_distances(spec: EncDecSpec, site: str, block, call: tuple, spans, distance, zero: bool) -> np.ndarray:
    args, kwargs = call
    attention = block.get_submodule(spec.stack(site).sublayers[spec.site_sublayer(site)].path)
    zeroed: list[Sequence[int] | None] = [None]
    sources: list[int] = []  # how many sources the value projection saw

    def zero_values(module, inputs, output):
        sources.append(output.shape[1])
        if zeroed[0] is None:
            return output
        output = output.clone()
        output[:, list(zeroed[0])] = 0  # the value projection's output rows of the zeroed sources
        return output

    def run(columns: Sequence[int] | None) -> torch.Tensor:
        zeroed[0] = columns
        y = block(*args, **kwargs)
        return (y[0] if isinstance(y, tuple) else y)[0]

    handles: list = []
    with hooks(handles):
        handles.append(attention.get_submodule(spec.value).register_forward_hook(zero_values))
        clean = run(None)
        columns = [[j] for j in range(sources[0])] if spans is None else [list(s) for s in spans]
        out = np.zeros((clean.shape[0], len(columns)))
        for c, cols in enumerate(columns):
            out[:, c] = distance(run(cols if zero else None), clean).cpu().numpy()
    return out
