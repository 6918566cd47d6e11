"""Audio inputs (vzcore.audio): reading, checking, resampling, Whisper's log-mel input, times to frames."""

from __future__ import annotations

import math
import wave

import numpy as np
import pytest
import torch
import transformers

from vzcore.audio import (
    Audio,
    AudioError,
    as_audio,
    audio_frames,
    frame_centre,
    frame_seconds,
    frame_span,
    log_mel,
    read_audio,
    resample,
)

WHISPER = transformers.WhisperConfig(num_mel_bins=80)  # the real models' frame geometry (1500 frames, 30 s)


def _write_wav(path, ints: np.ndarray, rate: int, width: int):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(ints.shape[1] if ints.ndim == 2 else 1)
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 3:
            w.writeframes(b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints.reshape(-1)))
        else:
            w.writeframes(ints.astype({1: "<u1", 2: "<i2", 4: "<i4"}[width]).tobytes())
    return path


def test_wav_files_of_every_pcm_width_read_as_the_mean_of_their_channels(tmp_path):
    left = np.array([0, 1000, -2000, 32767], np.int64)
    right = np.array([0, -1000, 2000, -32768], np.int64)
    stereo = np.stack([left, right], axis=1)
    audio = read_audio(_write_wav(tmp_path / "s16.wav", stereo, 8000, 2))
    assert audio.rate == 8000 and audio.samples.dtype == np.float32
    np.testing.assert_allclose(audio.samples, (left + right) / 2 / 32768)
    got24 = read_audio(_write_wav(tmp_path / "s24.wav", left * 256, 8000, 3)).samples
    np.testing.assert_allclose(got24, left / 32768, atol=1e-7)
    got8 = read_audio(_write_wav(tmp_path / "u8.wav", np.array([128, 255, 0]), 8000, 1)).samples
    np.testing.assert_allclose(got8, [0.0, 127 / 128, -1.0])


def test_flac_reads_through_soundfile(tmp_path):
    soundfile = pytest.importorskip("soundfile", reason="soundfile (the audio extra) reads FLAC")
    x = (np.sin(np.arange(4000) / 7) * 0.5).astype(np.float32)
    soundfile.write(tmp_path / "a.flac", x, 22050)
    audio = read_audio(tmp_path / "a.flac")
    assert audio.rate == 22050
    np.testing.assert_allclose(audio.samples, x, atol=1 / 32768)  # FLAC stores 16 bits here


def test_resampling_keeps_a_tone_at_its_frequency():
    rate, hz = 22050, 440.0
    t = np.arange(int(0.5 * rate)) / rate
    out = resample(Audio(np.sin(2 * np.pi * hz * t).astype(np.float32), rate), 16000)
    assert out.rate == 16000 and len(out.samples) == math.ceil(len(t) * 16000 / rate)
    want = np.sin(2 * np.pi * hz * np.arange(len(out.samples)) / 16000)
    inner = slice(200, -200)  # the filter's edges see zeros beyond the signal
    np.testing.assert_allclose(out.samples[inner], want[inner], atol=2e-3)
    assert resample(out, 16000) is out


def test_every_kind_of_bad_audio_is_one_clear_error(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"RIFF no audio here at all")
    cases = [
        (tmp_path / "missing.wav", "no such audio file"),
        (tmp_path / "junk.wav", "unreadable audio|not a PCM WAV"),
        ((np.zeros(0), 16000), "empty audio"),
        ((np.zeros(100), 0), "cannot be resampled"),
        ((np.zeros(100), 16000.5), "cannot be resampled"),
        ((np.zeros(100), float("nan")), "not a number"),
        ((np.zeros(100), "16k"), "not a number"),
        ((np.array([0.0, np.nan]), 16000), "not finite"),
        ((np.zeros((2, 3, 4)), 16000), "shape"),
        ((np.zeros(16000 * 31), 16000), "longer than the model's 30 s window"),
        ((np.zeros(100), 16000, 1), r"\(samples, sampling rate\)"),
    ]
    for source, message in cases:
        with pytest.raises(AudioError, match=message):
            log_mel(WHISPER, source)


def test_log_mel_is_whispers_extractor_on_the_resampled_audio():
    from scipy.signal import resample_poly

    rng = np.random.default_rng(0)
    x = (rng.standard_normal(8000 * 2) * 0.1).astype(np.float32)  # 2 s at 8 kHz
    got = log_mel(WHISPER, (x, 8000))
    extractor = transformers.WhisperFeatureExtractor(feature_size=80)
    want = extractor(resample_poly(x, 2, 1).astype(np.float32), sampling_rate=16000, return_tensors="pt")
    assert got.shape == (1, 80, 3000)
    assert torch.equal(got, want.input_features)


def test_times_map_to_the_encoder_frames_they_overlap():
    assert frame_seconds(WHISPER) == pytest.approx(0.02)
    # Whisper's frame k stands for [20k - 10, 20k + 10) ms
    assert frame_span(WHISPER, 0.0, 0.02) == range(0, 2)
    assert frame_span(WHISPER, 0.05, 0.11) == range(3, 6)  # 0.05 starts frame 3, 0.11 ends frame 5
    assert frame_span(WHISPER, 0.07, 0.09) == range(4, 5)  # exact boundaries take no extra frame
    assert frame_span(WHISPER, 0.061, 0.0612) == range(3, 4)  # shorter than a frame: its one frame
    assert frame_span(WHISPER, 29.99, 30.0) == range(1499, 1500)  # the window's last half frame
    for start, end in [(0.5, 0.5), (0.5, 0.4), (-0.1, 0.2), (29.9, 30.1), (0.0, float("inf"))]:
        with pytest.raises(ValueError):
            frame_span(WHISPER, start, end)
    assert audio_frames(WHISPER, Audio(np.zeros(48000, np.float32), 16000)) == 150
    assert audio_frames(WHISPER, Audio(np.zeros(48001, np.float32), 16000)) == 151
    wav2vec2 = transformers.Wav2Vec2Config()
    assert frame_seconds(wav2vec2) == pytest.approx(0.02)  # 5·2·2·2·2·2·2 = 320 samples at 16 kHz


def test_an_audio_or_a_file_is_taken_as_well_as_an_array(tmp_path):
    ints = (np.sin(np.arange(22050) / 5) * 10000).astype(np.int64)
    path = _write_wav(tmp_path / "a.wav", ints, 22050, 2)
    from_file = as_audio(path, 16000)
    from_audio = as_audio(read_audio(path), 16000)
    assert from_file.rate == 16000 and np.array_equal(from_file.samples, from_audio.samples)
    assert torch.equal(log_mel(WHISPER, path), log_mel(WHISPER, (ints / 32768, 22050)))


def test_integer_pcm_arrays_are_scaled_as_their_files_are():
    tone = np.sin(np.linspace(0, 200, 1600)).astype(np.float32) * 0.5
    pcm16 = np.round(tone * 32768).astype(np.int16)  # what scipy.io.wavfile.read returns
    got = as_audio((pcm16, 16000), 16000).samples
    np.testing.assert_allclose(got, pcm16 / 32768, atol=1e-7)
    assert np.abs(got).max() <= 1.0
    pcm8 = np.round(tone * 128 + 128).astype(np.uint8)  # 8-bit PCM is unsigned
    np.testing.assert_allclose(as_audio((pcm8, 16000), 16000).samples, (pcm8.astype(np.float32) - 128) / 128)


def _support(grad: torch.Tensor) -> list[int]:
    return torch.nonzero(grad.abs().flatten(end_dim=-2).sum(0) if grad.dim() > 1 else grad.abs()).flatten().tolist()


def test_frame_centres_are_where_each_encoder_frame_reads_its_input():
    # Whisper: encoder frame k reads mel frames 2k-2 … 2k+2 (two padded convolutions), centred on mel
    # frame 2k, which the feature extractor centres on 2k · 10 ms: frame k's centre is 20k ms.
    config = transformers.WhisperConfig(
        num_mel_bins=8,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=16,
        decoder_ffn_dim=16,
        max_source_positions=16,
    )
    torch.manual_seed(0)
    encoder = transformers.WhisperModel(config).encoder
    mel = torch.randn(1, 8, 32, requires_grad=True)
    out = torch.nn.functional.gelu(encoder.conv2(torch.nn.functional.gelu(encoder.conv1(mel))))
    for k in (3, 7):
        (grad,) = torch.autograd.grad(out[0, :, k].sum(), mel, retain_graph=True)
        reads = _support(grad[0])
        assert reads == list(range(2 * k - 2, 2 * k + 3))
        assert frame_centre(config) + k * frame_seconds(config) == pytest.approx(sum(reads) / len(reads) * 0.01)
    # wav2vec2: frame k reads samples 320k … 320k + 399 (unpadded convolutions): centred 12.47 ms later.
    w2v = transformers.Wav2Vec2Config(
        feat_extract_norm="layer",  # per time step ("group" normalises over time: every sample reaches every frame)
        conv_dim=(4,) * 7,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
    )
    features = transformers.Wav2Vec2Model(w2v).eval().feature_extractor
    samples = torch.randn(1, 320 * 6 + 80, requires_grad=True)
    for k in (0, 3):
        (grad,) = torch.autograd.grad(features(samples)[0, :, k].sum(), samples)  # a graph per frame
        reads = _support(grad[0])
        assert reads == list(range(320 * k, 320 * k + 400))
        centre = sum(reads) / len(reads) / 16000
        assert frame_centre(w2v) + k * frame_seconds(w2v) == pytest.approx(centre)
