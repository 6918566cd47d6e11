"""Span maps of a single stack: value zeroing and attention whose columns are spans, sets of positions
zeroed (or attended to) together: a word's audio frames, a word's tokens.

Value zeroing zeroes every position of a span at once (`vzcore.ops.span_zeroing`, exact); attention's
column is the head-mean mass the span's positions receive. Maps are `[layers, n, spans]`, rows
normalised. The other methods have no span form here and are refused before any model loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vzcore import scoring
from vzcore.capture import LayerCapture, stream_layers
from vzcore.inputs import Encoded
from vzcore.loading import ModelHandle
from vzcore.maps import Site
from vzcore.methods.registry import Method
from vzcore.ops.block import BlockView
from vzcore.ops.distances import DISTANCES
from vzcore.ops.rollout import normalize_rows
from vzcore.ops.span_zeroing import span_distances
from vzcore.result import ScoreResult
from vzcore.spans import parse_spans

__all__ = ["SPAN_METHODS", "check_span_methods", "per_input_spans", "span_maps", "span_result"]

SPAN_METHODS = ("value_zeroing", "attention")


def check_span_methods(methods: Sequence[Method]) -> None:
    """Raise `ValueError` unless every method has a span form (value zeroing, attention)."""
    other = [m.name for m in methods if m.name not in SPAN_METHODS]
    if other:
        raise ValueError(
            f"{', '.join(other)} have no span form (spans= zeroes sets of positions at once): "
            f"spans take {' and '.join(SPAN_METHODS)}"
        )


def _one_span_list(value: Any) -> bool:
    """Whether `value` is one list of spans (its first item a range, a `(first, end)` pair or a list of ints)."""
    head = value[0]
    return isinstance(head, range) or (
        isinstance(head, Sequence) and not isinstance(head, str) and len(head) > 0 and isinstance(head[0], int)
    )


def per_input_spans(spans: Any, encoded: Sequence[Encoded]) -> list[list[list[int]]]:
    """Return each input's spans as position lists, checked against its length: `spans` is one list of
    spans for every input or one list per input (None: no spans, an empty list per input)."""
    if spans is None:
        return [[] for _ in encoded]
    per = [spans] * len(encoded) if not len(spans) or _one_span_list(spans) else list(spans)
    if len(per) != len(encoded):
        raise ValueError(f"got {len(per)} span lists for {len(encoded)} inputs")
    pairs = enumerate(zip(per, encoded, strict=True))
    return [parse_spans(s, len(e.token_ids), f"positions of input #{k}") for k, (s, e) in pairs]


def span_maps(
    handle: ModelHandle,
    captures: dict[int, LayerCapture],
    layers: list[int],
    spans: list[list[int]],
    method: str,
    config: Any,
    memory_budget: int,
) -> np.ndarray:
    """Return one input's span maps `[layers, n, spans]` (float32, rows normalised) from its clean
    captures (a batch of one)."""
    spec = handle.family
    device = handle.device
    index = [torch.tensor(s, device=device) for s in spans]
    per_layer = []
    for layer in layers:
        cap = captures[layer]
        if method == "attention":
            mean = cap.attn[0].double().mean(0)  # `[n, n]`
            per_layer.append(torch.stack([mean[:, s].sum(-1) for s in index], -1))
            continue
        final = None
        if config.final_norm and spec.final_norm and layer == handle.num_layers - 1:
            final = handle.model.get_submodule(spec.final_norm)
        view = BlockView(spec, spec.blocks(handle.model)[layer], cap)
        per_layer.append(span_distances(view, index, DISTANCES[config.distance], memory_budget, final))
    maps, _ = normalize_rows(torch.stack(per_layer).double())
    return maps.float().cpu().numpy()


def streamed_span_maps(
    handle: ModelHandle,
    inputs: torch.Tensor,
    mask: torch.Tensor,
    layers: list[int],
    spans: list[list[int]],
    methods: list[str],
    configs: dict[str, Any],
    memory_budget: int,
) -> dict[str, np.ndarray]:
    """Return one input's span maps per method, `[layers, n, spans]`, scoring its layers group by group
    from inside the clean pass (`vzcore.scoring`: one group's captures held at a time, groups sized by
    `memory_budget`), as full maps are."""
    parts: dict[str, list[np.ndarray]] = {m: [] for m in methods}

    def on_group(captures: dict[int, LayerCapture]) -> None:
        here = [la for la in layers if la in captures]
        for m in methods:
            parts[m].append(span_maps(handle, captures, here, spans, m, configs[m], memory_budget))

    n = int(mask.shape[-1]) if mask is not None else 0
    per_layer = scoring.group_bytes_per_layer(1, n, handle.geometry.heads, len(methods))
    groups = scoring.layer_groups(sorted(set(layers)), per_layer, memory_budget)  # looked up here: tests force groups
    stream_layers(handle, inputs, mask, groups, on_group)
    return {m: np.concatenate(p, 0) for m, p in parts.items()}


def span_result(
    e: Encoded, layers: list[int], scores: dict[str, np.ndarray], site: Site, spans: list[list[int]]
) -> ScoreResult:
    """Return one input's `ScoreResult` of span maps (every row scored)."""
    return ScoreResult(
        tokens=e.tokens,
        token_ids=e.token_ids,
        word_ids=e.word_ids,
        layers=layers,
        scores=scores,
        text=e.text,
        offsets=e.offsets,
        truncated=e.truncated,
        scored_rows=np.ones(len(e.token_ids), dtype=bool),
        site=site,
        source_spans=spans,
    )
