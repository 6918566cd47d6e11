"""The few names users call: `load_model`, `score`, `list_methods`, `list_families`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vzcore import methods as _methods  # noqa: F401  (registers the built-in methods)
from vzcore.families import FamilySpec, family_for
from vzcore.inputs import Encoded, EncodedAudio, audio_inputs, encode, encode_audio
from vzcore.loading import ModelHandle, load_model, locate_model
from vzcore.maps import FRAMES, TOKENS, resolve_layers, self_site
from vzcore.methods.registry import Method, check_applicable, get_method, split_options
from vzcore.methods.spans import check_span_methods, per_input_spans, span_result, streamed_span_maps
from vzcore.ops.span_zeroing import spans_unsupported
from vzcore.precision import precision_context
from vzcore.result import ScoreResult
from vzcore.scoring import score_batch
from vzcore.spans import Span

__all__ = ["DEFAULT_MEMORY_BUDGET", "default_memory_budget", "score"]

# Bytes for one chunk of (target, source) pairs. On CPUs small enough that a chunk's temporaries
# stay below the allocator's mmap threshold once `vzcore.keep_freed_memory()` raised it (see
# vzcore.allocator); accelerators take larger chunks.
DEFAULT_MEMORY_BUDGET = {"cpu": 64 * 2**20, "cuda": 1024 * 2**20}


def default_memory_budget(device: torch.device | str) -> int:
    """Return the default bytes per chunk of pairs on `device` (a device type or device)."""
    kind = torch.device(device).type
    return DEFAULT_MEMORY_BUDGET.get(kind, DEFAULT_MEMORY_BUDGET["cpu"])


def _resolve_targets(targets, encoded: list[Encoded]) -> list[list[int]]:
    """Return each text's target rows; `targets` is None (all), one list for all texts, or one per text."""
    if targets is None:
        return [list(range(len(e.token_ids))) for e in encoded]
    if isinstance(targets, int):
        targets = [targets]
    per_text = targets if targets and not isinstance(targets[0], int) else [targets] * len(encoded)
    if len(per_text) != len(encoded):
        raise ValueError(f"got {len(per_text)} target lists for {len(encoded)} texts")
    out = []
    for k, (rows, e) in enumerate(zip(per_text, encoded, strict=True)):
        n = len(e.token_ids)
        bad = [r for r in rows if not -n <= r < n]
        if bad or not rows:
            raise ValueError(f"text #{k} has {n} tokens; target rows {bad or rows} are out of range")
        out.append(sorted({r % n for r in rows}))
    return out


def length_batches(lengths: Sequence[int], batch_size: int, cell_bytes: int, budget: int) -> list[list[int]]:
    """Cut ascending `lengths` into batches (lists of positions) of at most `batch_size` texts whose
    padded `[n, n]` cells, at `cell_bytes` each, fit in `budget` bytes; a text that alone exceeds it
    is a batch of its own. Long texts thus go a few at a time, and a worker's peak memory is set by
    its longest text rather than by eight of them."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i, n in enumerate(lengths):
        if current and (len(current) == batch_size or (len(current) + 1) * n * n * cell_bytes > budget):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def equal_inputs(batches: list[list[int]], encoded: Sequence[Encoded], alone: bool) -> list[list[int]]:
    """Split batches so that each holds inputs of one length only (audio: one number of samples, so that
    nothing is padded), or one input each (`alone`)."""
    out: list[list[int]] = []
    for batch in batches:
        groups: dict[int, list[int]] = {}
        for k in batch:
            e = encoded[k]
            size = len(e.values) if isinstance(e, EncodedAudio) else len(e.token_ids)
            groups.setdefault(-k if alone else size, []).append(k)
        out += list(groups.values())
    return out


def batch_inputs(handle: ModelHandle, items: Sequence[Encoded], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return a batch's model input (token ids `[b, n]` padded with `pad_id`, or audio input values
    `[b, samples]` of equal length) and its positions' mask `[b, n]` (tokens or frames)."""
    lengths = torch.tensor([len(e.token_ids) for e in items])
    n = int(lengths.max())
    mask = (torch.arange(n)[None, :] < lengths[:, None]).long()
    if handle.family.audio:
        values = np.stack([e.values for e in items if isinstance(e, EncodedAudio)])
        return torch.from_numpy(values).to(handle.dtype), mask
    ids = torch.full((len(items), n), pad_id, dtype=torch.long)
    for r, e in enumerate(items):
        ids[r, : lengths[r]] = torch.tensor(e.token_ids)
    return ids, mask


def _check_family(
    chosen: list[Method], family: FamilySpec, targets: bool, spans: bool, name: str, max_length: int | None
) -> None:
    """Raise `ValueError` unless every method applies to the family (and spans can be zeroed in its blocks)."""
    if family.audio and max_length is not None:
        raise ValueError(
            f"max_length= cuts token sequences; {name!r} reads audio, whose frames follow its length: cut the audio"
        )
    check_applicable(chosen, family, targets, name)
    if spans and (why := spans_unsupported(family)):
        raise ValueError(f"spans cannot be zeroed exactly in {name!r}: {why}")


def score(
    model: ModelHandle | str | Path | nn.Module,
    texts: str | Sequence[str] | Sequence[Sequence[int]],
    methods: Sequence[str] | str = ("value_zeroing",),
    *,
    layers: Sequence[int] | int | None = None,
    targets: Sequence[int] | Sequence[Sequence[int]] | None = None,
    max_length: int | None = None,
    batch_size: int = 8,
    memory_budget: int | None = None,
    precision: str = "float32",
    progress: bool = False,
    sampling_rate: int | None = None,
    spans: Sequence[Span] | Sequence[Sequence[Span]] | None = None,
    **options,
) -> list[ScoreResult]:
    """Score `texts` with each of `methods`; return one `ScoreResult` per text, in order.

    `layers` picks blocks (0-based, negatives count from the end); `targets` picks the rows
    (affected tokens) to score, for all texts or per text — unscored rows are NaN. Texts are
    batched by length with padding, which does not change the scores. `memory_budget` bounds
    the bytes of one chunk of pairs, of a batch's padded maps, and of the group of layers whose
    captures are scored at once (default: 64 MiB on CPUs, 1 GiB on GPUs; a text longer than that
    is a batch of its own, scored a layer at a time: `vzcore.scoring`). Method options
    (e.g. `distance=`, `final_norm=`) go to the methods that take them.

    Audio encoders (wav2vec2, HuBERT) take audio instead of texts: files, `(samples, rate)` pairs,
    `vzcore.audio.Audio`s, or 1-D sample arrays at `sampling_rate` Hz; their positions are the encoder's
    frames. `spans` (value zeroing and attention only; for all inputs or one list per input) gives
    sets of positions zeroed at once: each map is then `[layers, n, len(spans)]` (docs/audio-encoders.md).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if isinstance(methods, str):
        methods = [methods]
    chosen = [get_method(m) for m in methods]
    if spans is not None:
        check_span_methods(chosen)
        if targets is not None:
            raise ValueError("spans= scores every row: leave targets= out (pick rows of the span maps instead)")
        if precision != "float32":
            raise ValueError(f"spans= runs in float32 only; precision={precision!r} is for full maps")
    if not isinstance(model, ModelHandle | nn.Module | str | Path):
        config = getattr(model, "config", None)
        if getattr(config, "is_encoder_decoder", False):  # a `vzcore.seq2seq` handle: the error a path to one gets
            family_for(config)
        raise TypeError(f"model must be a ModelHandle, a torch module, a name or a path; not {type(model).__name__}")
    if not isinstance(model, ModelHandle | nn.Module):  # a name or a path: its config says what applies, unloaded
        located = locate_model(model)
        _check_family(chosen, located.family, targets is not None, spans is not None, str(model), max_length)
    handle = model if isinstance(model, ModelHandle) else load_model(model)
    if handle.family.audio:
        texts = audio_inputs(texts)  # one input (a file, an array of samples ...) or a list of them
    elif isinstance(texts, str):
        texts = [texts]
    _check_family(chosen, handle.family, targets is not None, spans is not None, handle.name, max_length)
    configs = split_options(chosen, options)
    layer_list = resolve_layers(layers, handle.num_layers)
    capture_set = set(layer_list)
    if any(m.needs_all_rows for m in chosen):
        capture_set |= set(range(max(layer_list) + 1))
    encoded: list[Encoded] = list(
        encode_audio(handle, texts, sampling_rate) if handle.family.audio else encode(handle, texts, max_length)
    )
    target_rows = _resolve_targets(targets, encoded)
    span_lists = per_input_spans(spans, encoded)
    device = handle.device
    if memory_budget is None:
        memory_budget = default_memory_budget(device)
    lower_precision = precision_context(precision, device)

    order = sorted(range(len(encoded)), key=lambda k: len(encoded[k].token_ids))
    # Per padded [n, n] cell: each captured layer's float32 attention weights and each output map.
    cell_bytes = 4 * (handle.config.num_attention_heads * len(capture_set) + len(chosen) * len(layer_list))
    batches = length_batches([len(encoded[k].token_ids) for k in order], batch_size, cell_bytes, memory_budget)
    batches = [[order[i] for i in b] for b in batches]
    if handle.family.audio or spans is not None:
        batches = equal_inputs(batches, encoded, alone=spans is not None)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="scoring", unit="batch")
    results: list[ScoreResult | None] = [None] * len(encoded)
    stream = FRAMES if handle.family.audio else TOKENS
    site = self_site(handle.family.causal, stream, spans=spans is not None)
    pad_id = getattr(handle.tokenizer, "pad_token_id", None) or 0
    for idx in batches:
        lengths = torch.tensor([len(encoded[k].token_ids) for k in idx])
        ids, mask = batch_inputs(handle, [encoded[k] for k in idx], pad_id)
        t = max(len(target_rows[k]) for k in idx)
        rows = torch.zeros((len(idx), t), dtype=torch.long)
        row_mask = torch.zeros((len(idx), t), dtype=torch.bool)
        for r, k in enumerate(idx):
            rows[r, : len(target_rows[k])] = torch.tensor(target_rows[k])
            row_mask[r, : len(target_rows[k])] = True
        with torch.no_grad():
            if spans is not None:  # one input per batch
                k = idx[0]
                names = [m.name for m in chosen]
                spanned = streamed_span_maps(
                    handle, ids.to(device), mask.to(device), layer_list, span_lists[k], names, configs, memory_budget
                )
                results[k] = span_result(encoded[k], layer_list, spanned, site, span_lists[k])
                continue
            maps = score_batch(
                handle,
                ids.to(device),
                mask.to(device),
                lengths,
                rows,
                row_mask,
                layer_list,
                chosen,
                configs,
                memory_budget,
                lower_precision,
            )
        for r, k in enumerate(idx):
            e, ln = encoded[k], int(lengths[r])
            scored = torch.zeros(ln, dtype=torch.bool)
            scored[target_rows[k]] = True
            results[k] = ScoreResult(
                tokens=e.tokens,
                token_ids=e.token_ids,
                word_ids=e.word_ids,
                layers=layer_list,
                scores={name: m[r] for name, m in maps.items()},
                text=e.text,
                offsets=e.offsets,
                truncated=e.truncated,
                scored_rows=scored.numpy(),
                site=site,
            )
    return results  # type: ignore[return-value]
