"""`score_pairs`: value zeroing and attention at every site of an encoder–decoder, one input pair at a time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vzcore.api import default_memory_budget
from vzcore.capture import SiteCapture, capture_sites
from vzcore.families.encdec import SITE_NAMES
from vzcore.maps import encdec_site, resolve_layers
from vzcore.methods import list_methods
from vzcore.ops.distances import DISTANCES
from vzcore.ops.rollout import normalize_rows
from vzcore.ops.sites import SiteBlock, site_distances
from vzcore.result import Seq2SeqResult, SiteMaps
from vzcore.seq2seq.handle import Seq2SeqHandle, load_seq2seq
from vzcore.seq2seq.inputs import Source, encode_source, encode_target, greedy_decode
from vzcore.spans import Span, parse_spans, word_spans

__all__ = ["SEQ2SEQ_METHODS", "check_site_methods", "score_pairs"]

SEQ2SEQ_METHODS = ("value_zeroing", "attention")

# Why each other registered method is refused at an encoder–decoder's sites.
_REFUSED = {
    "rollout": "a rollout composes one stream's maps across layers; a cross map (decoder tokens × encoder "
    "positions) and span maps have no such product, and encoder-decoder rollouts are not defined here yet",
    "norm": "the norm-based decompositions are written for one self-attention stack (their norms are "
    "placed by a single-stack block shape)",
    "gradient": "the gradient methods read a single-stack model's head (masked or causal LM)",
}


def _refusal(method: str) -> str:
    if method.endswith("_rollout"):
        return _REFUSED["rollout"]
    if method in ("grad_x_input", "integrated_gradients"):
        return _REFUSED["gradient"]
    return _REFUSED["norm"]


def check_site_methods(methods: Sequence[str]) -> list[str]:
    """Return `methods` if every one applies to encoder-decoder sites; else raise `ValueError` saying why."""
    out = []
    for m in methods:
        if m in SEQ2SEQ_METHODS:
            out.append(m)
        elif m in list_methods():
            raise ValueError(f"method {m!r} does not apply to encoder-decoder sites: {_refusal(m)}")
        else:
            raise ValueError(f"unknown method {m!r}; encoder-decoder sites take: {', '.join(SEQ2SEQ_METHODS)}")
    return out


def _per_pair(value: Any, count: int, what: str) -> list:
    """One value for every pair (None, a text, an id list), or one per pair."""
    if value is None or isinstance(value, str) or (len(value) and isinstance(value[0], int)):
        return [value] * count
    if len(value) != count:
        raise ValueError(f"got {len(value)} {what} for {count} sources")
    return list(value)


def _span_lists(value: Any, count: int, what: str) -> list:
    """One span list (or "words") for every pair, or one per pair: a span is a range, a `(first, end)`
    tuple or a list of ints, so a list whose first item is none of these holds one entry per pair."""
    if value is None or isinstance(value, str) or not len(value):
        return [value] * count
    head = value[0]
    one_span = isinstance(head, range) or (
        isinstance(head, Sequence) and not isinstance(head, str) and len(head) > 0 and isinstance(head[0], int)
    )
    return [value] * count if one_span else _per_pair(value, count, what)


def _spans(spec: Any, n: int, word_ids: list[int | None] | None, what: str) -> list[list[int]] | None:
    if spec is None:
        return None
    if spec == "words":
        if word_ids is None:
            raise ValueError(
                f'{what}="words" needs a fast tokenizer\'s word alignment of a text: give spans for id lists, '
                "audio and greedy outputs"
            )
        spec = word_spans(word_ids)
    return parse_spans(spec, n, what)


def score_pairs(
    model: Seq2SeqHandle | nn.Module | str | Path,
    sources: Sequence[Any],
    targets: Sequence[str | Sequence[int] | None] | None = None,
    *,
    methods: Sequence[str] | str = ("value_zeroing",),
    sites: Sequence[str] | str = SITE_NAMES,
    layers: Sequence[int] | int | Mapping[str, Sequence[int] | int] | None = None,
    source_spans: str | Sequence[Sequence[Span] | str | None] | None = None,
    target_spans: str | Sequence[Sequence[Span] | str | None] | None = None,
    sampling_rate: int | None = None,
    max_new_tokens: int = 64,
    decoder_prefix: Sequence[int] | None = None,
    distance: str = "cosine",
    memory_budget: int | None = None,
    frames: str = "window",
) -> list[Seq2SeqResult]:
    """Score (source, target) pairs of an encoder–decoder at each of `sites`; one result per source, in order.

    `targets` (texts or decoder id lists, one per source or one for all; None, or a None entry: the
    model's greedy output) are decoded by force. `layers` picks block indices of each site's stack,
    the same for every site or per site (`{"encoder": [0, -1], "cross": [-1]}`; a site left out: all
    its layers). `source_spans` (encoder and cross sites) and `target_spans` (decoder site) are, per
    pair or for all, spans of positions zeroed together, or `"words"`. See docs/encoder-decoders.md.

    `frames` (audio models given waveforms): `"window"` scores every encoder position of the model's
    window (Whisper: 1500 frames, 30 s, padding after a short utterance), `"audio"` only the frames
    that hold the audio, as targets of the encoder site and as sources of the encoder and cross
    sites (each row then normalised over them). The kept entries are the same distances either way:
    every output still reads the whole window. `"audio"` costs about (audio / window)² at the encoder.
    """
    if frames not in ("window", "audio"):
        raise ValueError(f"frames is 'window' or 'audio', not {frames!r}")
    handle = load_seq2seq(model)
    methods = check_site_methods([methods] if isinstance(methods, str) else methods)
    sites = [sites] if isinstance(sites, str) else list(sites)
    for site in sites:
        handle.family.site_sublayer(site)  # an unknown site fails here, before any work
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; choose from: {', '.join(DISTANCES)}")
    if isinstance(sources, str):
        sources = [sources]
    count = len(sources)
    target_list = _per_pair(targets, count, "targets")
    src_spans = _span_lists(source_spans, count, "source span lists")
    tgt_spans = _span_lists(target_spans, count, "target span lists")
    per_site = layers if isinstance(layers, Mapping) else {s: layers for s in sites}
    unknown = sorted(set(per_site) - set(sites))
    if unknown:
        raise ValueError(f"layers given for sites {unknown} that are not scored (sites: {', '.join(sites)})")
    layer_map = {s: resolve_layers(per_site.get(s), handle.num_layers(s)) for s in sites}
    for site, chosen in layer_map.items():
        if not chosen:
            raise ValueError(f"no layers chosen at the {site} site: give at least one, or None for all")
    budget = memory_budget if memory_budget is not None else default_memory_budget(handle.device)
    results = []
    for k, source in enumerate(sources):
        src = encode_source(handle, source, sampling_rate)
        if target_list[k] is None:
            target_ids, target_words, origin = (
                greedy_decode(handle, src, max_new_tokens, decoder_prefix),
                None,
                "greedy",
            )
        else:
            (target_ids, target_words), origin = encode_target(handle, target_list[k]), "given"
        results.append(
            _score_one(
                handle,
                src,
                target_ids,
                target_words,
                origin,
                methods,
                sites,
                layer_map,
                src_spans[k],
                tgt_spans[k],
                distance,
                budget,
                frames,
            )
        )
    return results


@torch.no_grad()
def _score_one(
    handle: Seq2SeqHandle,
    src: Source,
    target_ids: list[int],
    target_words: list[int | None] | None,
    origin: str,
    methods: list[str],
    sites: Sequence[str],
    layer_map: dict[str, list[int]],
    source_spans: Any,
    target_spans: Any,
    distance: str,
    budget: int,
    frames: str = "window",
) -> Seq2SeqResult:
    spec, model = handle.family, handle.model
    inputs = {**src.inputs, "decoder_input_ids": torch.tensor([target_ids], device=handle.device)}
    caps = capture_sites(model, spec, inputs, sites, layer_map)
    # encoder positions: the source's tokens, or the audio frames after Whisper's stride-2 front end
    n_src = len(src.ids) if src.ids is not None else src.inputs["input_features"].shape[-1] // 2
    if frames == "audio" and src.frames is not None:
        n_src = min(n_src, src.frames)  # the frames that hold the utterance (`score_pairs`' `frames`)
    spans = {
        "encoder": _spans(source_spans, n_src, src.word_ids, "source_spans"),
        "cross": _spans(source_spans, n_src, src.word_ids, "source_spans"),
        "decoder": _spans(target_spans, len(target_ids), target_words, "target_spans"),
    }
    out = {}
    for site in sites:
        site_spans = spans[site]
        index = None if site_spans is None else [torch.tensor(s, device=handle.device) for s in site_spans]
        scores = {}
        for method in methods:
            per_layer = []
            for layer in layer_map[site]:
                cap = caps[(site, layer)]
                # targets and sources kept: the encoder's positions up to `n_src` at the source's sites
                window = None
                if site != "decoder":
                    window = (n_src if site == "encoder" else cap.attn.shape[1], n_src)
                if method == "attention":
                    per_layer.append(_attention(cap, index, window))
                else:
                    block = SiteBlock(spec, site, spec.blocks(model, site)[layer], cap)
                    causal = site == "decoder" and index is None
                    per_layer.append(site_distances(block, DISTANCES[distance], index, causal, budget, window=window))
            maps, _ = normalize_rows(torch.stack(per_layer).double())
            scores[method] = maps.float().cpu().numpy()
        out[site] = SiteMaps(
            encdec_site(site, spec.audio, spans=index is not None), layer_map[site], scores, site_spans
        )
    return Seq2SeqResult(
        source_ids=src.ids,
        source_tokens=src.tokens,
        target_ids=target_ids,
        target_tokens=None if handle.tokenizer is None else list(handle.tokenizer.convert_ids_to_tokens(target_ids)),
        target_from=origin,
        n_source=int(n_src),
        sites=out,
        seconds_per_source=handle.seconds_per_source,
        source_word_ids=src.word_ids,
        target_word_ids=target_words,
    )


def _attention(cap: SiteCapture, spans: list[torch.Tensor] | None, window: tuple[int, int] | None) -> torch.Tensor:
    """Head-mean attention `[targets, sources]`; a span's column is the mass its positions receive;
    `window = (rows, sources)` keeps the first ones (see `site_distances`)."""
    mean = cap.attn.double().mean(0)
    if window is not None:
        mean = mean[: window[0], : window[1]]
    if spans is None:
        return mean
    return torch.stack([mean[:, s].sum(-1) for s in spans], -1)
