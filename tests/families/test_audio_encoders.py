"""wav2vec2 and HuBERT (audio encoders, post-norm and pre-norm blocks) on tiny seeded configs: value
zeroing equals the one-block-call-per-frame reference, spans of frames zeroed at once equal zeroing
them by hand, the other methods equal their published formulas, audio inputs in every form give the
same maps, and what does not apply is refused before any weights load."""

from __future__ import annotations

import copy
import wave

import numpy as np
import pytest
import torch
import transformers

import vzcore
from tests.families.test_methods_norms import _normalise, _rolled, _trace, _vectors
from tests.families.test_methods_norms import reference as norm_reference
from tests.harness.models import tiny_audio_model
from tests.support import sample_ids
from vzcore.audio import Audio, AudioError, conv_frames, frame_span, receptive_field, resample
from vzcore.capture import capture_layers
from vzcore.families import UnsupportedModelError, family_for
from vzcore.inputs import encode_audio
from vzcore.maps import FRAMES
from vzcore.ops.block import BlockView
from vzcore.ops.distances import cosine_distance
from vzcore.ops.paths import ZeroingPlan
from vzcore.ops.span_zeroing import spans_unsupported
from vzcore.reference import reference_value_zeroing

TOL = 1e-5
RATE = 16_000


def _wave(seed: int, samples: int = 8000) -> np.ndarray:
    """Seeded noise with a slow tone: 0.5 s at 16 kHz by default (24 frames)."""
    g = np.random.default_rng(seed)
    t = np.arange(samples) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * g.standard_normal(samples)).astype(np.float32)


def _values(handle, wave_: np.ndarray) -> list[float]:
    """The model's input values of one waveform at 16 kHz (what the reference reruns)."""
    return encode_audio(handle, [wave_], RATE)[0].values.tolist()


def test_fast_path_equals_the_one_call_per_frame_reference(tiny_audio):
    w = _wave(1)
    got = vzcore.score(tiny_audio, [w], sampling_rate=RATE)[0]
    n = conv_frames(tiny_audio.config, len(w))
    assert got.scores["value_zeroing"].shape == (2, n, n) and got.site.targets == FRAMES
    np.testing.assert_allclose(
        got.scores["value_zeroing"], reference_value_zeroing(tiny_audio, _values(tiny_audio, w)), atol=TOL, rtol=0
    )
    np.testing.assert_allclose(got.scores["value_zeroing"].sum(-1), 1.0, atol=1e-5)


def test_zeroing_nothing_changes_nothing(tiny_audio):
    ref = reference_value_zeroing(tiny_audio, _values(tiny_audio, _wave(2)), zero=False)
    assert np.all(ref == 0)


@torch.no_grad()
def test_the_fast_paths_clean_rows_are_the_blocks_outputs_and_zeroing_nothing_is_zero(tiny_audio):
    values = torch.tensor([_values(tiny_audio, _wave(2))])
    captures = capture_layers(tiny_audio, values, None, [0, 1])
    rows = torch.arange(captures[0].x.shape[1])[None]
    for layer, cap in captures.items():
        plan = ZeroingPlan.build(BlockView(tiny_audio.family, tiny_audio.family.blocks(tiny_audio.model)[layer], cap))
        zeroed, clean = plan.outputs(torch.zeros_like(cap.attn), rows, None)
        assert cosine_distance(zeroed, clean).abs().max() < 1e-12, layer
        _, clean = plan.outputs(cap.attn, rows, None)
        torch.testing.assert_close(clean[:, 0], cap.out, atol=1e-5, rtol=1e-5)


def test_final_norm_on_the_last_pre_norm_block(tiny_audio_models):
    handle = tiny_audio_models["wav2vec2-stable"]
    w = _wave(3)
    got = vzcore.score(handle, [w], sampling_rate=RATE, final_norm=True)[0].scores["value_zeroing"]
    ref = reference_value_zeroing(handle, _values(handle, w), final_norm=True)
    np.testing.assert_allclose(got, ref, atol=TOL, rtol=0)
    plain = vzcore.score(handle, [w], sampling_rate=RATE)[0].scores["value_zeroing"]
    assert np.abs(plain[-1] - got[-1]).max() > 1e-3  # the final norm changes the last layer's distances


def test_frame_spans_zeroed_at_once_equal_zeroing_them_by_hand(tiny_audio):
    w = _wave(4)
    # two "words" from their times (the encoder's 20 ms stride) and a scattered set of frames
    words = [frame_span(tiny_audio.config, 0.05, 0.12), frame_span(tiny_audio.config, 0.3, 0.41)]
    spans = [*words, [1, 7, 20]]
    got = vzcore.score(tiny_audio, [w], sampling_rate=RATE, spans=spans, methods=["value_zeroing", "attention"])[0]
    by_hand = [list(s) for s in spans]
    assert all(len(s) >= 4 for s in by_hand[:2])  # (which frames a time overlaps: tests/unit/test_audio.py)
    ref = reference_value_zeroing(tiny_audio, _values(tiny_audio, w), spans=by_hand)
    assert got.scores["value_zeroing"].shape == (2, 24, 3) and got.source_spans == by_hand
    np.testing.assert_allclose(got.scores["value_zeroing"], ref, atol=TOL, rtol=0)
    # attention's span column is the mass the span's frames receive
    full = vzcore.score(tiny_audio, [w], sampling_rate=RATE, methods=["attention"])[0].scores["attention"]
    mass = np.stack([full[..., s].sum(-1) for s in by_hand], -1)
    np.testing.assert_allclose(got.scores["attention"], mass / mass.sum(-1, keepdims=True), atol=1e-6)


def test_one_frame_spans_equal_the_full_maps_columns(tiny_audio_models):
    handle = tiny_audio_models["hubert"]
    w = _wave(5)
    full = vzcore.score(handle, [w], sampling_rate=RATE)[0].scores["value_zeroing"]
    cols = [3, 11, 23]
    got = vzcore.score(handle, [w], sampling_rate=RATE, spans=[[c] for c in cols], memory_budget=1)[0]
    raw = full[..., cols]
    # (renormalising 3 of 24 columns scales the float32 rounding of both paths' block outputs by 8: relative)
    np.testing.assert_allclose(got.scores["value_zeroing"], raw / raw.sum(-1, keepdims=True), atol=0, rtol=2e-4)


@pytest.mark.parametrize("method", ["attention_norm_res", "attention_norm_res_ln", "globenc", "alti"])
def test_norm_based_methods_match_the_published_formulas(tiny_audio, method):
    if not vzcore.methods.get_method(method).supports(tiny_audio.family):
        with pytest.raises(ValueError, match="post-norm encoders only"):
            vzcore.score(tiny_audio, [_wave(6, 4000)], sampling_rate=RATE, methods=[method])
        return
    w = _wave(6, 4000)
    got = vzcore.score(tiny_audio, [w], sampling_rate=RATE, methods=[method])[0].scores[method]
    np.testing.assert_allclose(got, norm_reference(tiny_audio, _values(tiny_audio, w), method), atol=TOL, rtol=0)


@torch.no_grad()
def test_attention_norm_and_rollouts_match_their_formulas(tiny_audio):
    w = _wave(17, 4000)
    values = _values(tiny_audio, w)
    methods = ["attention_norm", "value_zeroing_rollout", "alti_rollout"]
    got = vzcore.score(tiny_audio, [w], sampling_rate=RATE, methods=methods)[0].scores
    blocks, seen = _trace(tiny_audio, values)
    for k, block in enumerate(blocks):  # Kobayashi et al. 2020: ‖Σ_h a_ij^h f^h(x_j)‖
        z, _, _ = _vectors(tiny_audio, block, seen[k])
        np.testing.assert_allclose(got["attention_norm"][k], _normalise(z.sum(2).norm(dim=-1)), atol=TOL)
    vz = reference_value_zeroing(tiny_audio, values)
    np.testing.assert_allclose(got["value_zeroing_rollout"], _rolled(vz), atol=TOL, rtol=0)
    np.testing.assert_allclose(got["alti_rollout"], _rolled(norm_reference(tiny_audio, values, "alti")), atol=TOL)


@torch.no_grad()
def test_attention_is_the_models_own_head_mean(tiny_audio):
    w = _wave(7)
    got = vzcore.score(tiny_audio, [w], sampling_rate=RATE, methods=["attention", "attention_rollout"])[0].scores
    values = torch.tensor([_values(tiny_audio, w)])
    out = tiny_audio.model(input_values=values, output_attentions=True)
    for k, a in enumerate(out.attentions):
        np.testing.assert_allclose(got["attention"][k], a[0].mean(0).numpy(), atol=1e-6)
    np.testing.assert_allclose(got["attention_rollout"].sum(-1), 1.0, atol=1e-5)


def test_batches_of_several_lengths_equal_each_input_alone(tiny_audio_models):
    handle = tiny_audio_models["wav2vec2"]  # group norm in the feature encoder: padding would change frames
    waves = [_wave(8), _wave(9, 6400), _wave(10)]
    together = vzcore.score(handle, waves, sampling_rate=RATE, methods=["value_zeroing", "alti"])
    for w, got in zip(waves, together, strict=True):
        alone = vzcore.score(handle, [w], sampling_rate=RATE, methods=["value_zeroing", "alti"])[0]
        assert got.n == conv_frames(handle.config, len(w))
        for m in ("value_zeroing", "alti"):
            np.testing.assert_allclose(got.scores[m], alone.scores[m], atol=TOL, rtol=0)


def _write_wav(path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def test_every_form_of_audio_input_gives_the_same_maps(tiny_audio_models, tmp_path):
    handle = tiny_audio_models["hubert-stable"]
    at_8k = _wave(11, 4000)[::1]  # taken as 8 kHz audio: resampled to 16 kHz
    path = tmp_path / "x.wav"
    _write_wav(path, at_8k, 8000)
    pcm = (np.clip(at_8k, -1, 1) * 32767).astype(np.int16)  # the file's samples, as integer PCM
    by_hand = resample(Audio(pcm.astype(np.float32) / 32768, 8000), RATE).samples
    want = vzcore.score(handle, [by_hand], sampling_rate=RATE)[0]
    for given in (str(path), path, (pcm, 8000), Audio(pcm.astype(np.float32) / 32768, 8000)):
        got = vzcore.score(handle, given)[0]
        assert got.tokens[:3] == ["0.012", "0.032", "0.052"] and got.word_ids is None  # centres: 400 samples read
        np.testing.assert_allclose(got.scores["value_zeroing"], want.scores["value_zeroing"], atol=1e-6, rtol=0)
    assert vzcore.score(handle, str(path))[0].text == str(path)


def test_the_feature_extractor_normalises_each_input(tiny_audio_models):
    handle = tiny_audio_models["wav2vec2"]
    values = np.asarray(_values(handle, 5 * _wave(12) + 0.5))
    assert abs(values.mean()) < 1e-5 and abs(values.std() - 1) < 1e-3
    louder = vzcore.score(handle, [5 * _wave(12) + 0.5], sampling_rate=RATE)[0].scores["value_zeroing"]
    plain = vzcore.score(handle, [_wave(12)], sampling_rate=RATE)[0].scores["value_zeroing"]
    np.testing.assert_allclose(louder, plain, atol=1e-4)  # gain and offset are normalised away


def test_bad_audio_is_one_clear_error(tiny_audio_models):
    handle = tiny_audio_models["wav2vec2"]
    with pytest.raises(ValueError, match="#0 is an array of samples: give its sampling_rate="):
        vzcore.score(handle, [_wave(13)])
    with pytest.raises(AudioError, match=r"#1: .*shorter than the feature encoder's first frame \(25.0 ms\)"):
        vzcore.score(handle, [_wave(13), _wave(13, 300)], sampling_rate=RATE)
    with pytest.raises(AudioError, match=r"audio input #0: .*no such audio file"):
        vzcore.score(handle, "no-such-file.wav")
    with pytest.raises(AudioError, match="cannot be resampled"):
        vzcore.score(handle, [_wave(13)], sampling_rate=50)


def test_what_does_not_apply_is_refused_with_the_reason(tiny_audio_models, no_model_load):
    handle = tiny_audio_models["hubert"]
    with pytest.raises(ValueError, match=r"grad_x_input cannot score .*rerun the model from token ids.*audio encoder"):
        vzcore.score(handle, [_wave(14)], sampling_rate=RATE, methods=["grad_x_input"], targets=[0])
    with pytest.raises(ValueError, match=r"alti have no span form .*spans take value_zeroing and attention"):
        vzcore.score("never-loaded", [_wave(14)], sampling_rate=RATE, methods=["alti"], spans=[(0, 2)])
    with pytest.raises(ValueError, match=r"span #0 .* reaches \[24, 25\]: there are 24 positions of input #0"):
        vzcore.score(handle, [_wave(14)], sampling_rate=RATE, spans=[(23, 26)])
    with pytest.raises(ValueError, match="leave targets= out"):
        vzcore.score(handle, [_wave(14)], sampling_rate=RATE, spans=[(0, 2)], targets=[0])
    with pytest.raises(ValueError, match="spans= runs in float32 only"):
        vzcore.score(handle, [_wave(14)], sampling_rate=RATE, spans=[(0, 2)], precision="bfloat16")
    with pytest.raises(ValueError, match=r"max_length= cuts token sequences; .* reads audio"):
        vzcore.score(handle, [_wave(14)], sampling_rate=RATE, max_length=10)  # never silently ignored


def test_methods_that_do_not_apply_are_refused_before_weights_load(tmp_path, monkeypatch):
    tiny_audio_model("hubert-stable").save_pretrained(tmp_path)
    monkeypatch.setattr(vzcore.api, "load_model", lambda *a, **k: pytest.fail("the weights loaded"))
    with pytest.raises(ValueError, match=r"integrated_gradients cannot score .* audio encoder reads samples"):
        vzcore.score(tmp_path, [_wave(16)], sampling_rate=RATE, methods=["integrated_gradients"], targets=[0])
    with pytest.raises(ValueError, match=r"globenc are defined for post-norm encoders only.*pre-norm hubert"):
        vzcore.score(str(tmp_path), [_wave(16)], sampling_rate=RATE, methods=["globenc"])


def test_attention_adapters_are_refused_before_weights_load(tmp_path):
    cfg = transformers.Wav2Vec2Config(do_stable_layer_norm=True, adapter_attn_dim=16, num_hidden_layers=1)
    with pytest.raises(UnsupportedModelError, match="attention adapters \\(adapter_attn_dim=16\\)"):
        family_for(cfg)
    cfg.save_pretrained(tmp_path)  # a folder with a config and no weights: refused when located
    with pytest.raises(UnsupportedModelError, match="attention adapters"):
        vzcore.locate_model(tmp_path)


def test_a_saved_ctc_checkpoint_loads_its_encoder_and_feature_extractor(tmp_path):
    torch.manual_seed(0)
    base = tiny_audio_model("wav2vec2")
    config = copy.deepcopy(base.config)
    config.vocab_size = 12  # a CTC head over 12 letters
    ctc = transformers.Wav2Vec2ForCTC(config)
    ctc.wav2vec2.load_state_dict(base.state_dict())
    ctc.save_pretrained(tmp_path / "ctc")
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=RATE).save_pretrained(tmp_path / "ctc")
    handle = vzcore.load_model(tmp_path / "ctc")
    assert handle.family.name == "wav2vec2" and handle.tokenizer is None and handle.lm is None
    assert type(handle.model).__name__ == "Wav2Vec2Model"
    w = _wave(15)
    got = vzcore.score(handle, [w], sampling_rate=RATE)[0].scores["value_zeroing"]
    want = vzcore.score(vzcore.load_model(base), [w], sampling_rate=RATE)[0].scores["value_zeroing"]
    np.testing.assert_allclose(got, want, atol=1e-6)
    base.save_pretrained(tmp_path / "bare")  # no feature extractor saved: the standard one
    bare = vzcore.load_model(tmp_path / "bare")
    assert bare.feature_extractor.sampling_rate == RATE and bare.feature_extractor.do_normalize


def test_families_are_listed_with_their_layouts_and_refusals():
    from vzcore.families import family_specs

    names = {f.name: f for f in family_specs()}
    assert names["wav2vec2"].audio and names["hubert"].audio
    stable = family_for(transformers.HubertConfig(do_stable_layer_norm=True))
    assert stable.shape.layout == "pre-norm" and stable.final_norm == "encoder.layer_norm"
    assert family_for(transformers.Wav2Vec2Config()).shape.layout == "post-norm"


def test_frame_counts_and_receptive_field_follow_the_feature_encoder():
    config = transformers.Wav2Vec2Config()  # the real kernels (10, 3, 3, 3, 3, 2, 2) and strides (5, 2, …)
    model = transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(conv_dim=(2,) * 7, num_hidden_layers=1))
    for samples in (399, 400, 719, 720, 8000, 32000, 32001):
        want = int(model._get_feat_extract_output_lengths(torch.tensor(samples)))
        assert conv_frames(config, samples) == max(want, 0), samples
    assert conv_frames(config, 32000) == 99 and receptive_field(config) == 400


@pytest.mark.parametrize("kind", ["bert", "llama", "gemma2", "opt", "gpt_neox"])
def test_spans_of_text_tokens_equal_zeroing_them_by_hand(tiny_models, kind):
    """Spans are no audio matter: a text model's token spans zeroed at once equal the reference, where its
    blocks run attention then a feed-forward module; the others are refused before any work."""
    handle = tiny_models[kind]
    ids = sample_ids(40, 9)
    spans = [[0], [1, 2, 3], [4, 8]]
    why = spans_unsupported(handle.family)
    if why is not None:
        with pytest.raises(ValueError, match="spans cannot be zeroed exactly"):
            vzcore.score(handle, [ids], spans=spans)
        assert kind == "gpt_neox"  # parallel blocks
        return
    got = vzcore.score(handle, [ids], spans=spans, methods=["value_zeroing"])[0].scores["value_zeroing"]
    np.testing.assert_allclose(got, reference_value_zeroing(handle, ids, spans=spans), atol=TOL, rtol=0)
