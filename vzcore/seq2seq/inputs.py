"""An encoder–decoder's inputs: a source (text, ids, a waveform or input features) to model inputs, a
target to decoder ids, or the model's own greedy output; audio times to encoder positions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vzcore.audio import Audio, as_audio, audio_frames, frame_span, model_rate, window_seconds
from vzcore.seq2seq.handle import Seq2SeqHandle

__all__ = ["Source", "encode_source", "encode_target", "greedy_decode", "input_features", "time_span"]


@dataclass
class Source:
    """One encoded source: what the encoder reads, and its ids and words where it is text."""

    inputs: dict[str, torch.Tensor]  # `input_ids` `[1, n]` or `input_features` `[1, n_mels, frames]`
    ids: list[int] | None = None
    tokens: list[str] | None = None
    word_ids: list[int | None] | None = None
    frames: int | None = None  # audio: the encoder frames that hold it (the rest of the window is padding)


def _pieces(handle: Seq2SeqHandle, ids: Sequence[int]) -> list[str] | None:
    tok = handle.tokenizer
    return None if tok is None else list(tok.convert_ids_to_tokens(list(ids)))


def input_features(handle: Seq2SeqHandle, waveform: Any, sampling_rate: int) -> torch.Tensor:
    """Return the feature extractor's input features `[n_mels, frames]` of one mono waveform at `sampling_rate`
    (checked and resampled to the extractor's rate by `vzcore.audio.as_audio`)."""
    return _features(handle, _audio(handle, waveform, sampling_rate))


def _audio(handle: Seq2SeqHandle, waveform: Any, sampling_rate: int) -> Audio:
    """One mono waveform checked and resampled to the feature extractor's rate."""
    fe = handle.feature_extractor
    if fe is None:
        raise ValueError(f"{handle.name} has no feature extractor: pass input features `[n_mels, frames]` instead")
    wave = np.asarray(waveform)  # integer PCM is scaled by `as_audio`, not cast
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"a waveform is a non-empty 1-D array; got shape {wave.shape}")
    rate = getattr(fe, "sampling_rate", None) or model_rate(handle.model.config)
    return as_audio((wave, sampling_rate), rate, window_seconds(handle.model.config))


def _features(handle: Seq2SeqHandle, audio: Audio) -> torch.Tensor:
    assert handle.feature_extractor is not None  # `_audio` refuses a handle without one
    return handle.feature_extractor(audio.samples, sampling_rate=audio.rate, return_tensors="pt").input_features[0]


def encode_source(handle: Seq2SeqHandle, source: Any, sampling_rate: int | None = None) -> Source:
    """Encode one source: a text or id list (text models); a 1-D waveform with `sampling_rate`, or input
    features `[n_mels, frames]` (audio models)."""
    device = handle.device
    if handle.family.audio:
        if isinstance(source, str) or (isinstance(source, Sequence) and source and isinstance(source[0], int)):
            raise ValueError(f"{handle.name} reads audio: a 1-D waveform (with sampling_rate=) or `[n_mels, frames]`")
        arr = torch.as_tensor(np.asarray(source), dtype=torch.float32)
        frames = None  # input features: where the audio ends is not known
        if arr.ndim == 1:
            if sampling_rate is None:
                raise ValueError("a waveform needs its sampling_rate=")
            audio = _audio(handle, arr.numpy(), sampling_rate)
            arr, frames = _features(handle, audio), max(1, audio_frames(handle.model.config, audio))
        if arr.ndim != 2:
            raise ValueError(f"audio input features are `[n_mels, frames]`; got shape {tuple(arr.shape)}")
        dtype = next(handle.model.parameters()).dtype
        return Source({"input_features": arr[None].to(device, dtype)}, frames=frames)
    if isinstance(source, str):
        if handle.tokenizer is None:
            raise ValueError(f"{handle.name} has no tokenizer: pass token-id lists")
        enc = handle.tokenizer(source)
        ids = list(enc["input_ids"])
        words = enc.word_ids() if getattr(enc, "is_fast", False) else None
    else:
        ids, words = [int(i) for i in source], None
    if not ids:
        raise ValueError("a source holds no tokens")
    return Source({"input_ids": torch.tensor([ids], device=device)}, ids, _pieces(handle, ids), words)


def _start(handle: Seq2SeqHandle) -> int:
    start = getattr(handle.config, "decoder_start_token_id", None)
    if start is None:
        raise ValueError(f"{handle.name}'s config names no decoder_start_token_id")
    return int(start)


def encode_target(handle: Seq2SeqHandle, target: str | Sequence[int]) -> tuple[list[int], list[int | None] | None]:
    """Return the decoder input ids of a given target (the start token, then its tokens; a target that already
    begins with the start token keeps it once) and their word ids where the tokenizer knows them."""
    words: list[int | None] | None = None
    if isinstance(target, str):
        if handle.tokenizer is None:
            raise ValueError(f"{handle.name} has no tokenizer: pass target token-id lists")
        enc = handle.tokenizer(text_target=target)
        ids = list(enc["input_ids"])
        words = enc.word_ids() if getattr(enc, "is_fast", False) else None
    else:
        ids = [int(i) for i in target]
    if isinstance(target, str) and getattr(handle.config, "model_type", None) == "mbart" and ids:
        # mBART decodes from its labels shifted right with the last token wrapped to the front
        # (`shift_tokens_right`): [tgt_lang, tokens, </s>] for cc25's suffixed language code.
        ids = [ids[-1], *ids[:-1]]
        words = None if words is None else [None, *words[:-1]]
        return ids, words
    start = _start(handle)
    if not ids or ids[0] != start:
        ids = [start, *ids]
        words = None if words is None else [None, *words]
    return ids, words


@torch.no_grad()
def greedy_decode(
    handle: Seq2SeqHandle, source: Source, max_new_tokens: int, prefix: Sequence[int] | None = None
) -> list[int]:
    """Return the model's own output as decoder input ids: from `prefix` (default: the start token), the
    most probable next token at each step (no sampling, no suppression lists) until the end-of-sequence
    token or `max_new_tokens`."""
    model: Any = handle.model
    ids = list(prefix) if prefix else [_start(handle)]
    # the config's and the generation config's end-of-sequence ids; either may be one id or a list
    ends: set[int] = set()
    for where in (handle.config, getattr(model, "generation_config", None)):
        eos = getattr(where, "eos_token_id", None)
        ends.update([eos] if isinstance(eos, int) else list(eos or []))
    encoder_outputs = model.get_encoder()(**source.inputs)
    for _ in range(max_new_tokens):
        dec = torch.tensor([ids], device=handle.device)
        logits = model(encoder_outputs=encoder_outputs, decoder_input_ids=dec, use_cache=False).logits
        nxt = int(logits[0, -1].argmax())
        ids.append(nxt)
        if nxt in ends:
            break
    return ids


def time_span(handle: Seq2SeqHandle, start_s: float, end_s: float) -> tuple[int, int]:
    """Return the encoder positions `(first, end)` (end exclusive) covering `[start_s, end_s)` seconds of audio
    (`vzcore.audio.frame_span`)."""
    if handle.seconds_per_source is None:
        raise ValueError(f"{handle.name} reads text: its encoder positions are tokens, not times")
    span = frame_span(handle.model.config, start_s, end_s)
    return span.start, span.stop
