"""Synthetic speech with known word times, from espeak-ng (for tests and speech evaluations).

A sentence is spoken whole by the espeak-ng library (`libespeak-ng`, the Debian package
`libespeak-ng1` that `espeak-ng` installs), called through `ctypes` in its synchronous mode: its
callback hands over the samples and a *word event* per word with the sample where the word starts.
A word ends where the next one starts, less the silence before it (samples under 2 % of the
utterance's peak, keeping 10 ms); the last ends where the loud samples end. espeak-ng speaks some
pairs of short words as one ("on the", "in the"): they come back as one unit with one span. So each word's span is
known as espeak-ng placed it, with the sentence's own prosody (speaking words one by one and
joining them came out much harder to transcribe: "A quick round-fark jump over the lazy dog").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import itertools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from vzcore.audio import Audio, resample

__all__ = ["SpeechError", "SyntheticSpeech", "espeak_available", "synthesise"]

_LIBRARY = "espeak-ng"
_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS: samples come back through the callback
_POS_CHARACTER, _CHARS_UTF8 = 1, 1
_EVENT_END, _EVENT_WORD = 0, 1  # espeakEVENT_LIST_TERMINATED, espeakEVENT_WORD
_LOCK = threading.Lock()  # the library keeps one global state


class SpeechError(RuntimeError):
    """espeak-ng is missing or failed."""


@dataclass(frozen=True)
class SyntheticSpeech:
    """An utterance and its words as espeak-ng spoke them (a merged pair as one: "on the"), each with
    its `(start, end)` in seconds."""

    audio: Audio
    words: tuple[str, ...]
    times: tuple[tuple[float, float], ...]

    @property
    def text(self) -> str:
        return " ".join(self.words)


class _Event(ctypes.Structure):
    # espeak_EVENT (speak_lib.h)
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in characters
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def espeak_available() -> bool:
    return ctypes.util.find_library(_LIBRARY) is not None


@functools.lru_cache(maxsize=1)
def _library() -> tuple[Any, int]:
    """The library, initialised once; and its sampling rate."""
    name = ctypes.util.find_library(_LIBRARY)
    if name is None:
        raise SpeechError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    lib = ctypes.CDLL(name)
    rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, None, 0)
    if rate <= 0:
        raise SpeechError(f"espeak-ng did not start (espeak_Initialize returned {rate})")
    return lib, rate


def _speak(text: str, voice: str, speed: int) -> tuple[np.ndarray, int, list[tuple[int, int]]]:
    """Samples (int16), the rate, and `(start sample, start character)` per word event."""
    lib, rate = _library()
    chunks: list[np.ndarray] = []
    words: list[tuple[int, int]] = []
    encoded = text.encode("utf-8")

    def on_audio(wav: Any, count: int, events: Any) -> int:
        if count > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        i = 0
        while events[i].type != _EVENT_END:
            e = events[i]
            if e.type == _EVENT_WORD:  # text_position counts the Python string's characters from 1
                words.append((e.sample, e.text_position - 1))
            i += 1
        return 0

    callback = _CALLBACK(on_audio)  # kept alive until synthesis ends
    with _LOCK:
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise SpeechError(f"espeak-ng has no voice {voice!r}")
        lib.espeak_SetParameter(1, speed, 0)  # espeakRATE, words per minute, absolute
        lib.espeak_SetSynthCallback(callback)
        status = lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
    if status != 0 or not chunks:
        raise SpeechError(f"espeak-ng could not speak {text!r} (status {status})")
    return np.concatenate(chunks), rate, words


def synthesise(
    text: str, rate: int = 16_000, voice: str = "en-us", speed: int = 150, lead: float = 0.2
) -> SyntheticSpeech:
    """Speak `text` at `rate` Hz with `lead` s of silence before and after it; each word's span in seconds."""
    if not text.strip():
        raise ValueError("nothing to say: the text is empty")
    samples, own_rate, events = _speak(text, voice, speed)
    if not events:
        raise SpeechError(f"espeak-ng reported no words in {text!r}")
    wave = samples.astype(np.float32) / 32768
    loud = np.abs(wave) > 0.02 * np.abs(wave).max()
    keep = int(0.01 * own_rate)
    starts = [s for s, _ in events]
    times = []
    for k, start in enumerate(starts):
        stop = starts[k + 1] if k + 1 < len(starts) else len(wave)
        inside = np.flatnonzero(loud[start:stop])
        end = start + (inside[-1] + 1 + keep if inside.size else stop - start)
        times.append((start, min(end, stop)))
    # A unit's text runs from its event's character to the next event's (a merged pair: both words).
    cuts = [c for _, c in events] + [len(text)]
    units = tuple(text[a:b].strip().rstrip(".,;:!?\"')") for a, b in itertools.pairwise(cuts))
    audio = resample(Audio(wave, own_rate), rate)
    pad = np.zeros(int(lead * rate), np.float32)
    audio = Audio(np.concatenate([pad, audio.samples, pad]), rate)
    seconds = [(lead + int(a) / own_rate, lead + int(b) / own_rate) for a, b in times]
    # espeak-ng reports a word event for some closing punctuation ("letter." gives one for "."): no word
    spoken = [k for k, u in enumerate(units) if any(c.isalnum() for c in u)]
    return SyntheticSpeech(audio, tuple(units[k] for k in spoken), tuple(seconds[k] for k in spoken))
