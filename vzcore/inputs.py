"""Turn texts (or pre-tokenised id lists) into the token sequences that get scored, or an audio
encoder's waveforms into its input values and frames."""

from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vzcore.audio import Audio, AudioError, conv_frames, frame_seconds, input_values, model_rate, receptive_field
from vzcore.loading import ModelHandle

__all__ = [
    "Encoded",
    "EncodedAudio",
    "TruncationWarning",
    "UnscorableTextError",
    "audio_inputs",
    "check_max_length",
    "check_tokenizer",
    "encode",
    "encode_audio",
    "text_problem",
]

# Unicode categories that draw nothing: controls, format characters (zero-width space, joiners,
# direction marks) and separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
# Characters of other categories that draw nothing either: the combining grapheme joiner, the
# Hangul fillers, the blank Braille pattern and the variation selectors.
_BLANKS = frozenset("\u034f\u115f\u1160\u2800\u3164\uffa0" + "".join(map(chr, range(0xFE00, 0xFE10))))


@dataclass
class Encoded:
    """One text's tokens, as the model will see them."""

    token_ids: list[int]
    tokens: list[str]
    word_ids: list[int | None] | None
    offsets: list[tuple[int, int]] | None
    text: str | None
    truncated: bool


@dataclass
class EncodedAudio(Encoded):
    """One waveform as an audio encoder reads it: its input values, and its frames as the positions.

    `token_ids` are the frame indices `0 .. n−1` and `tokens` the centre of each frame's receptive field
    in seconds (`"0.012"`, `"0.032"`, …: 20 ms apart), so that a result's positions read as times; there
    are no words.
    """

    values: np.ndarray  # `[samples]` float32: the model's input values (at its rate, normalised)


def audio_inputs(given: Any) -> list[Any]:
    """Return `given` as a list of audio inputs: one input (a file, an `Audio`, a `(samples, rate)` pair, a
    1-D array or tensor of samples) becomes a list of one; a list or tuple of inputs stays as it is."""
    one_pair = (
        isinstance(given, tuple) and len(given) == 2 and isinstance(given[1], int | np.integer | float)
    )  # `(samples, rate)`, not two files
    if isinstance(given, str | Path | Audio) or one_pair or getattr(given, "ndim", None) == 1:
        return [given]
    return list(given)


def encode_audio(handle: ModelHandle, inputs: Sequence[Any], sampling_rate: int | None) -> list[EncodedAudio]:
    """Return each audio input as its model reads it: a file (str or path), an `Audio`, a `(samples, rate)`
    pair, or a 1-D array of samples at `sampling_rate` Hz. Raises `vzcore.audio.AudioError` for unusable
    audio (unreadable, empty, an unusable rate, shorter than one frame), naming the input."""
    config, fe = handle.config, handle.feature_extractor
    out = []
    for k, item in enumerate(inputs):
        if isinstance(item, str | Path | Audio | tuple):
            source = item
        elif sampling_rate is None:
            raise ValueError(f"audio input #{k} is an array of samples: give its sampling_rate=")
        else:
            source = (np.asarray(item), sampling_rate)
        try:
            values = input_values(config, fe, source)
        except AudioError as err:
            raise AudioError(f"audio input #{k}: {err}") from err
        n = conv_frames(config, len(values))
        step, centre = frame_seconds(config), (receptive_field(config) - 1) / 2 / model_rate(config)
        labels = [f"{centre + t * step:.3f}" for t in range(n)]  # each frame's centre, in seconds
        name = str(item) if isinstance(item, str | Path) else None
        out.append(EncodedAudio(list(range(n)), labels, None, None, name, False, values))
    return out


class TruncationWarning(UserWarning):
    """Some inputs were longer than the token limit and were cut to it."""


class UnscorableTextError(ValueError):
    """Texts with nothing to score; `reasons` maps each one's position among the inputs to why."""

    def __init__(self, reasons: dict[int, str]) -> None:
        self.reasons = reasons
        k, why = next(iter(reasons.items()))
        more = f" ({len(reasons) - 1} more texts likewise)" if len(reasons) > 1 else ""
        super().__init__(f"text #{k} has nothing to score: {why}{more}")


def text_problem(text: str | None) -> str | None:
    """Return why `text` has nothing to score before it is tokenised (None when it may have)."""
    if text is None or not text.strip():
        return "missing text"
    if all(c in _BLANKS or unicodedata.category(c) in _INVISIBLE_CATEGORIES for c in text):
        return "only invisible characters"
    return None


def check_tokenizer(tokenizer, name: str) -> None:
    """Raise `ValueError` unless `tokenizer` turns a plain sentence into tokens (a folder saved
    without its tokenizer files loads one that encodes everything to nothing)."""
    probe = "The cat sat on the mat."
    if tokenizer is None or not tokenizer(probe, add_special_tokens=False)["input_ids"]:
        raise ValueError(
            f"{name} has no usable tokenizer (it encodes text to no tokens): save one beside the weights, "
            "e.g. AutoTokenizer.from_pretrained(ORIGINAL).save_pretrained(FOLDER)"
        )


def _least_length(tokenizer) -> int:
    """Return the smallest token limit that keeps one text token: the special tokens `tokenizer` adds, plus one."""
    return tokenizer.num_special_tokens_to_add(pair=False) + 1 if tokenizer is not None else 1


def check_max_length(max_length: int | None, tokenizer, most: int | None, option: str = "max_length=") -> None:
    """Raise `ValueError` unless a text cut to `max_length` tokens keeps at least one text token and
    fits the model (`most`: its longest input, if known)."""
    if max_length is None:
        return
    least = _least_length(tokenizer)
    if max_length < least:
        added = least - 1
        why = f"the tokenizer adds {added} special token{'s' * (added != 1)} to each text, so " if added else ""
        raise ValueError(f"{option}{max_length} leaves no room for text: {why}it must be at least {least}")
    if most is not None and max_length > most:
        raise ValueError(f"{option}{max_length} is longer than the model takes: at most {most} tokens")


def encode(handle: ModelHandle, texts: Sequence[str | Sequence[int]], max_length: int | None) -> list[Encoded]:
    """Tokenise `texts` with the model's tokenizer (special tokens included) or take id lists as given.

    Inputs longer than `max_length` (default: the model's limit) are truncated with a
    `TruncationWarning`. A limit too small to keep one text token is refused, and so are texts with
    nothing to score (`UnscorableTextError`: missing, only invisible characters, or no token besides
    the special ones) and empty id lists.
    """
    tok = handle.tokenizer
    check_max_length(max_length, tok if any(isinstance(t, str) for t in texts) else None, handle.max_length)
    limit = max_length or handle.max_length
    out = []
    unscorable: dict[int, str] = {}
    for k, item in enumerate(texts):
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                unscorable[k] = problem
                continue
            if tok is None:
                raise ValueError(
                    "this model has no tokenizer: pass one to load_model(..., tokenizer=) or give token id lists"
                )
            enc = tok(
                item,
                truncation=limit is not None,
                max_length=limit,
                return_offsets_mapping=tok.is_fast,
                return_overflowing_tokens=False,
            )
            ids = list(enc["input_ids"])
            if not ids:  # never score nothing: a tokenizer without a vocabulary encodes every text so
                raise ValueError(f"text #{k} encodes to no tokens: the model's tokenizer is not usable")
            if len(ids) <= tok.num_special_tokens_to_add(pair=False):
                unscorable[k] = "no text token (the tokenizer keeps none of its characters)"
                continue
            # Counting the untruncated length is no risk: `verbose=False` drops the tokenizer's
            # "will result in indexing errors" warning, which the truncation above makes untrue.
            full = len(tok(item, add_special_tokens=True, verbose=False)["input_ids"])
            word_ids = enc.word_ids() if tok.is_fast else None
            offsets = [tuple(o) for o in enc["offset_mapping"]] if tok.is_fast else None
            out.append(Encoded(ids, tok.convert_ids_to_tokens(ids), word_ids, offsets, item, full > len(ids)))
        else:
            ids = [int(i) for i in item]
            if not ids:
                raise ValueError(f"token id list #{k} is empty; nothing to score")
            truncated = limit is not None and len(ids) > limit
            ids = ids[:limit] if truncated else ids
            tokens = tok.convert_ids_to_tokens(ids) if tok is not None else [str(i) for i in ids]
            out.append(Encoded(ids, tokens, None, None, None, truncated))
    if unscorable:
        raise UnscorableTextError(unscorable)
    cut = [k for k, e in enumerate(out) if e.truncated]
    if cut:
        shown = ", ".join(f"#{k}" for k in cut[:5]) + (", ..." if len(cut) > 5 else "")
        warnings.warn(
            f"{len(cut)} input(s) longer than {limit} tokens were truncated to it (texts {shown})",
            TruncationWarning,
            stacklevel=3,
        )
    return out
