"""Audio inputs for speech models: read, check, resample, log-mel features, and times to encoder frames.

An input is a file (WAV through the standard library's `wave`; FLAC, OGG and the rest through
`soundfile`, the `audio` extra) or an array with its sampling rate. It becomes mono float32 at the
model's rate (16 kHz for Whisper and wav2vec2), resampled with `scipy.signal.resample_poly` (a
polyphase filter: exact rational ratios, an anti-aliasing low-pass built in). What cannot be used
raises `AudioError` with one line saying why: an unreadable file, no samples, a rate that cannot be
resampled, samples that are not finite, or audio longer than the model's window (Whisper: 30 s).

Encoder frames: Whisper's log-mel frames are 10 ms apart (a hop of 160 samples at 16 kHz) and its
second convolution has stride 2, so one encoder frame is 20 ms, 1500 frames in the 30 s window;
wav2vec2 / HuBERT's feature encoder strides multiply to 320 samples, again 20 ms. A frame stands for
the 20 ms around its centre (`frame_centre`): Whisper's frame k is centred on 20k ms (the mel frames
are centred on their hop, and both convolutions are padded to keep centres), wav2vec2's on the
middle of its unpadded receptive field (400 samples: 20k + 12.5 ms). A word from `start` to `end`
seconds covers every frame whose 20 ms overlap it (`frame_span`).
"""

from __future__ import annotations

import io
import math
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MAX_RATE",
    "MIN_RATE",
    "Audio",
    "AudioError",
    "as_audio",
    "audio_frames",
    "audio_seconds",
    "conv_frames",
    "decode_audio",
    "frame_centre",
    "frame_seconds",
    "frame_span",
    "frames_for_seconds",
    "input_values",
    "log_mel",
    "model_rate",
    "read_audio",
    "receptive_field",
    "resample",
    "window_seconds",
]

# Rates a recording can have and still be resampled to a speech model's: below 1 kHz nothing of
# speech is left; above 384 kHz is no audio format's rate (a number of samples passed as a rate?).
MIN_RATE, MAX_RATE = 1_000, 384_000


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty, an unusable rate, not finite, or too long."""


@dataclass(frozen=True)
class Audio:
    """Mono samples (`[samples]`, float32, nominally in [-1, 1]) and their sampling rate in Hz."""

    samples: np.ndarray
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def _check_rate(rate: Any, where: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer | float) or not math.isfinite(rate):
        raise AudioError(f"{where}: sampling rate {rate!r} is not a number of samples per second")
    if rate != int(rate) or not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(
            f"{where}: sampling rate {rate!r} Hz cannot be resampled (a whole number from {MIN_RATE} to {MAX_RATE})"
        )
    return int(rate)


def _mono(samples: np.ndarray, where: str) -> np.ndarray:
    """`[samples]` or `[samples, channels]` (soundfile's and `wave`'s order) to mono float32 (the channels' mean).

    Integer PCM (`scipy.io.wavfile.read`'s int16, for one) is scaled to [-1, 1] as a file's would be:
    taken as floats it would be 32,767 times too loud (Whisper then hears music)."""
    if samples.dtype.kind == "i":
        samples = samples.astype(np.float32) / -float(np.iinfo(samples.dtype).min)
    elif samples.dtype.kind == "u":  # unsigned PCM (8-bit) is centred on half its range
        half = (int(np.iinfo(samples.dtype).max) + 1) / 2
        samples = (samples.astype(np.float32) - half) / half
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.ndim != 1:
        raise AudioError(f"{where}: samples of shape {samples.shape}; expected [samples] or [samples, channels]")
    if samples.size == 0:
        raise AudioError(f"{where}: no samples (empty audio)")
    samples = samples.astype(np.float32, copy=False)
    if not np.isfinite(samples).all():
        raise AudioError(f"{where}: samples that are not finite (NaN or infinity)")
    return samples


def _read_wav(path: Path | io.BytesIO, where: str) -> Audio:
    with wave.open(path if isinstance(path, io.BytesIO) else str(path), "rb") as w:
        width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 3:  # 24-bit: widen each sample to 32 bits (low byte zero), keeping the sign
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        ints = (b[:, 0].astype(np.int32) << 8 | b[:, 1].astype(np.int32) << 16 | b[:, 2].astype(np.int32) << 24) >> 8
        data = ints.astype(np.float32) / 2**23
    elif width in (2, 4):
        data = np.frombuffer(raw, f"<i{width}").astype(np.float32) / 2 ** (8 * width - 1)
    elif width == 1:  # 8-bit WAV is unsigned
        data = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    else:
        raise AudioError(f"{where}: {8 * width}-bit WAV samples are not read")
    return Audio(_mono(data.reshape(-1, channels), where), _check_rate(rate, where))


def read_audio(path: str | Path, where: str | None = None) -> Audio:
    """Read an audio file as mono float32 at its own rate (WAV: `wave`; other formats: `soundfile`);
    an error names the file `where` (default: its path)."""
    path = Path(path)
    where = str(path) if where is None else where
    if not path.is_file():
        raise AudioError(f"{where}: no such audio file")
    try:
        return _read(path, where)
    except OSError as err:  # no permission, a read error: named as the caller names the file, not by its path
        raise AudioError(f"{where}: cannot be read ({err.strerror or type(err).__name__})") from err


def decode_audio(data: bytes, where: str = "audio bytes") -> Audio:
    """Read an audio file's bytes (a `datasets` Audio column's, undecoded) as mono float32 at its own rate."""
    if not data:
        raise AudioError(f"{where}: no bytes (empty audio)")
    return _read(io.BytesIO(data), where)


def _read(path: Path | io.BytesIO, where: str) -> Audio:
    try:
        if isinstance(path, io.BytesIO):
            path.seek(0)
        return _read_wav(path, where)
    except (wave.Error, EOFError) as err:
        wav_error = err  # not a PCM WAV (or a float WAV, which `wave` does not read): soundfile's turn
    try:
        import soundfile
    except ImportError as err:
        why = f"not a PCM WAV file ({wav_error}), and soundfile (the audio extra) is not installed to read others"
        raise AudioError(f"{where}: {why}") from err
    if isinstance(path, io.BytesIO):
        path.seek(0)
    try:
        readable = path if isinstance(path, io.BytesIO) else str(path)
        data, rate = soundfile.read(readable, dtype="float32", always_2d=True)
    except RuntimeError as err:  # soundfile's LibsndfileError: not an audio file it knows
        why = str(err) if isinstance(path, io.BytesIO) else str(err).replace(str(path), where)  # the caller's name
        raise AudioError(f"{where}: unreadable audio ({why})") from err
    return Audio(_mono(data, where), _check_rate(rate, where))


def resample(audio: Audio, rate: int) -> Audio:
    """Return `audio` at `rate` Hz (a polyphase filter at the exact ratio; unchanged if already there)."""
    rate = _check_rate(rate, "target")
    if audio.rate == rate:
        return audio
    from scipy.signal import resample_poly

    g = math.gcd(rate, audio.rate)
    out = resample_poly(audio.samples, rate // g, audio.rate // g).astype(np.float32)
    if out.size == 0:
        raise AudioError(f"{audio.seconds:.4f} s of audio leaves no sample at {rate} Hz")
    return Audio(out, rate)


def as_audio(source: str | Path | Audio | tuple[Any, int], rate: int, max_seconds: float | None = None) -> Audio:
    """Read or take audio (a file, an `Audio`, or `(array, sampling rate)`), check it and resample it to `rate`.

    Raises `AudioError` for unreadable, empty, non-finite or too long (over `max_seconds`) audio and
    for a rate that cannot be resampled.
    """
    if isinstance(source, Audio):
        audio = Audio(_mono(np.asarray(source.samples), "audio"), _check_rate(source.rate, "audio"))
    elif isinstance(source, tuple):
        if len(source) != 2:
            raise AudioError("audio as a tuple is (samples, sampling rate)")
        samples, given = source
        audio = Audio(_mono(np.asarray(samples), "audio"), _check_rate(given, "audio"))
    else:
        audio = read_audio(source)
    if max_seconds is not None and audio.seconds > max_seconds:
        raise AudioError(f"{audio.seconds:.2f} s of audio is longer than the model's {max_seconds:g} s window")
    return resample(audio, rate)


def _extractor(config: Any) -> Any:
    from transformers import WhisperFeatureExtractor

    kind = getattr(config, "model_type", None)
    if kind != "whisper":
        raise ValueError(f"log-mel features are Whisper's; a {kind!r} model takes samples")
    # Whisper's extractors differ only in their number of mel bins (80; 128 from large-v3 on).
    return WhisperFeatureExtractor(feature_size=config.num_mel_bins)


def model_rate(config: Any) -> int:
    """The sampling rate a speech model takes (16 kHz for Whisper, wav2vec2 and HuBERT)."""
    return 16_000


def window_seconds(config: Any) -> float | None:
    """The longest audio the model takes in one window (Whisper: 30 s); `None` where unbounded."""
    if getattr(config, "model_type", None) == "whisper":
        return float(config.max_source_positions * frame_seconds(config))
    return None


def frame_seconds(config: Any) -> float:
    """Seconds per encoder frame: the feature hop times the encoder's stride (20 ms for Whisper and wav2vec2)."""
    if getattr(config, "model_type", None) == "whisper":
        return 2 * 160 / model_rate(config)  # a 10 ms mel hop, then conv2's stride of 2
    strides = getattr(config, "conv_stride", None)
    if strides:  # wav2vec2 / HuBERT: the feature encoder's convolutions
        return math.prod(strides) / model_rate(config)
    raise ValueError(f"no encoder frame rate known for a {getattr(config, 'model_type', None)!r} model")


def log_mel(config: Any, source: str | Path | Audio | tuple[Any, int]) -> Any:
    """Whisper's log-mel input (`[1, mel bins, 3000]`, float32 torch tensor; the 30 s window, zero-padded)."""
    audio = as_audio(source, model_rate(config), window_seconds(config))
    return _extractor(config)(audio.samples, sampling_rate=audio.rate, return_tensors="pt").input_features


def conv_frames(config: Any, samples: int) -> int:
    """How many frames a wav2vec2 / HuBERT feature encoder makes of `samples` samples: each convolution
    (kernel k, stride s, no padding) keeps `floor((L − k) / s) + 1` of `L` positions (0: too short)."""
    n = samples
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        n = (n - kernel) // stride + 1 if n >= kernel else 0
    return n


def input_values(config: Any, feature_extractor: Any, source: str | Path | Audio | tuple[Any, int]) -> np.ndarray:
    """Return what a wav2vec2 / HuBERT model reads of one input (`[samples]`, float32): mono at the feature
    extractor's rate (16 kHz), normalised to zero mean and unit variance where the extractor does
    (`do_normalize`). Raises `AudioError` as `as_audio` does, and for audio too short for one frame."""
    rate = int(getattr(feature_extractor, "sampling_rate", None) or model_rate(config))
    audio = as_audio(source, rate)
    if conv_frames(config, len(audio.samples)) < 1:
        raise AudioError(
            f"{audio.seconds * 1000:.1f} ms of audio is shorter than the feature encoder's first frame "
            f"({receptive_field(config) / rate * 1000:.1f} ms)"
        )
    out = feature_extractor(audio.samples, sampling_rate=rate, return_tensors="np").input_values[0]
    return np.asarray(out, dtype=np.float32)


def receptive_field(config: Any) -> int:
    """The samples one wav2vec2 / HuBERT feature-encoder frame reads (400: 25 ms at 16 kHz); frame k reads
    samples `k · 320` up to that many later, so its centre is `(field − 1) / 2` samples after its first."""
    field, jump = 1, 1
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        field, jump = field + (kernel - 1) * jump, jump * stride
    return field


def audio_frames(config: Any, audio: Audio) -> int:
    """How many encoder frames hold the audio (the rest of Whisper's window is padding; wav2vec2 and
    HuBERT: what their feature encoder makes of the samples at the model's rate, `conv_frames`)."""
    if getattr(config, "conv_kernel", None):
        return conv_frames(config, len(resample(audio, model_rate(config)).samples))
    return frames_for_seconds(config, audio.seconds)


def frames_for_seconds(config: Any, seconds: float) -> int:
    """How many of Whisper's encoder frames hold `seconds` of audio (at most its window's)."""
    return min(math.ceil(seconds / frame_seconds(config) - 1e-9), _max_frames(config))


def audio_seconds(source: str | Path | bytes) -> float | None:
    """Seconds of an audio file (or its bytes) from its header alone, no sample decoded; None where the
    header does not say (not audio, a streamed WAV with no length: whoever decodes it says why)."""
    readable: str | io.BytesIO = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        with wave.open(readable, "rb") as w:
            rate, count = w.getframerate(), w.getnframes()
        return count / rate if rate > 0 and count > 0 else None
    except (wave.Error, EOFError, OSError):
        pass  # not a PCM WAV: soundfile reads the other formats' headers
    try:
        import soundfile

        if isinstance(readable, io.BytesIO):
            readable.seek(0)
        info = soundfile.info(readable)
    except (ImportError, RuntimeError, OSError, ValueError):  # soundfile's LibsndfileError is a RuntimeError
        return None
    return info.frames / info.samplerate if info.samplerate > 0 and info.frames > 0 else None


def _max_frames(config: Any) -> int:
    return int(getattr(config, "max_source_positions", 0)) or 2**31 - 1


def frame_centre(config: Any) -> float:
    """Seconds from the audio's start to the centre of encoder frame 0 (frame k's is `k · frame_seconds` later)."""
    if getattr(config, "model_type", None) == "whisper":
        return 0.0  # mel frames centred on their hop; conv1 and conv2 are padded by 1 each side
    if getattr(config, "conv_kernel", None) and getattr(config, "conv_stride", None):
        # wav2vec2 / HuBERT: unpadded convolutions, frame 0 starts at sample 0
        return (receptive_field(config) - 1) / 2 / model_rate(config)
    raise ValueError(f"no encoder frame geometry known for a {getattr(config, 'model_type', None)!r} model")


def frame_span(config: Any, start: float, end: float) -> range:
    """The encoder frames whose stretch (a frame length around each centre) overlaps `start` to `end` seconds."""
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
        raise ValueError(f"a span runs forwards from 0 s on; got {start} to {end} s")
    f, c, frames = frame_seconds(config), frame_centre(config), _max_frames(config)
    if end > frames * f + 1e-9:
        raise ValueError(f"a span ending at {end} s is past the model's {frames * f:g} s window")
    # frame k covers [c + (k - ½) f, c + (k + ½) f); 1e-9: 0.06 / 0.02 is 2.9999…
    first = max(math.floor((start - c) / f + 0.5 + 1e-9), 0)
    stop = min(math.ceil((end - c) / f + 0.5 - 1e-9), frames)
    first = min(first, stop - 1)  # the window's last half frame: its last frame
    return range(first, max(stop, first + 1))
