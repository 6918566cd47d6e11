"""`vzcore.seq2seq.score_pairs` on tiny seeded encoder–decoders: every site's maps through the public
function equal the references (value zeroing: one block call per column; attention: the model's own
returned weights), forced and greedy decoding, spans, audio inputs, and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import vzcore.audio
from tests.harness.models import tiny_pair
from vzcore import seq2seq
from vzcore.families.encdec import SITE_NAMES, encdec_family_for
from vzcore.reference import reference_site_zeroing
from vzcore.seq2seq.inputs import encode_source, encode_target, greedy_decode

TOL = 1e-5


def source_of(model, inputs):
    if "input_features" in inputs:
        return inputs["input_features"][0].cpu().numpy()
    return inputs["input_ids"][0].tolist()


def test_every_site_and_method_matches_its_reference(tiny_s2s):
    inputs = tiny_pair(tiny_s2s, seed=11, n_src=8, n_tgt=6)
    target = inputs["decoder_input_ids"][0, 1:].tolist()  # the start token is prepended
    r = seq2seq.score_pairs(tiny_s2s, [source_of(tiny_s2s, inputs)], [target], methods=["value_zeroing", "attention"])[
        0
    ]
    assert r.target_from == "given"
    assert r.target_ids == inputs["decoder_input_ids"][0].tolist()
    spec = encdec_family_for(tiny_s2s.config)
    with torch.no_grad():
        out = tiny_s2s(**inputs, output_attentions=True, use_cache=False)
    weights = {"encoder": out.encoder_attentions, "decoder": out.decoder_attentions, "cross": out.cross_attentions}
    for site in SITE_NAMES:
        maps = r.sites[site]
        assert maps.site.name == site and maps.site.causal == (site == "decoder")
        ref = reference_site_zeroing(tiny_s2s, spec, inputs, site)
        np.testing.assert_allclose(maps.scores["value_zeroing"], ref, atol=TOL, rtol=0, err_msg=site)
        mean = torch.stack([w[0].mean(0) for w in weights[site]]).numpy()
        np.testing.assert_allclose(maps.scores["attention"], mean, atol=TOL, rtol=0, err_msg=site)
    assert r.sites["cross"].scores["value_zeroing"].shape == (2, 6, r.n_source)


def test_greedy_target_is_the_models_own_output():
    model = _t5()
    ids = [5, 17, 33, 9, 41, 1]
    r = seq2seq.score_pairs(model, [ids], max_new_tokens=5, sites=["cross"])[0]
    assert r.target_from == "greedy"
    with torch.no_grad():
        expected = model.generate(torch.tensor([ids]), max_new_tokens=5, do_sample=False, num_beams=1)[0].tolist()
    assert r.target_ids == expected
    assert r.sites["cross"].scores["value_zeroing"].shape == (2, len(expected), len(ids))


def test_greedy_decoding_stops_at_any_end_of_sequence_id_of_the_config_or_the_generation_config():
    model = _t5()
    ids = [5, 17, 33, 9, 41, 1]
    handle = seq2seq.load_seq2seq(model)
    free = greedy_decode(handle, encode_source(handle, ids), 6)
    stop = free[2]  # the second token the model emits
    model.config.eos_token_id = None
    model.generation_config.eos_token_id = [999, stop]  # a list, as many checkpoints give it
    r = seq2seq.score_pairs(model, [ids], max_new_tokens=6, sites=["cross"])[0]
    assert r.target_ids == free[: free.index(stop) + 1]


def test_mbart_text_targets_are_its_labels_shifted_right_as_the_model_trains():
    from transformers.models.mbart.modeling_mbart import shift_tokens_right

    class Suffixed:  # cc25's tokenizer: tokens, </s>, then the target language's code
        def __call__(self, text_target):
            return {"input_ids": [5, 6, 7, 2, 250004]}

    handle = seq2seq.load_seq2seq(_model("mbart"), tokenizer=Suffixed())
    ids, _ = encode_target(handle, "a target")
    labels = torch.tensor([[5, 6, 7, 2, 250004]])
    assert ids == shift_tokens_right(labels, pad_token_id=1)[0].tolist() == [250004, 5, 6, 7, 2]


def _model(kind: str):
    from tests.harness.models import tiny_seq2seq

    return tiny_seq2seq(kind)


def _t5():
    from tests.harness.models import tiny_seq2seq

    return tiny_seq2seq("t5")


def test_mixed_given_and_greedy_targets_say_which(tiny_seq2seq_models):
    model = tiny_seq2seq_models["bart"]
    got = seq2seq.score_pairs(model, [[5, 6, 7], [8, 9]], [[10, 11, 2], None], max_new_tokens=3, sites=["decoder"])
    assert [r.target_from for r in got] == ["given", "greedy"]
    assert got[0].target_ids == [2, 10, 11, 2]


def test_span_maps_equal_zeroing_the_spans_by_hand(tiny_s2s):
    inputs = tiny_pair(tiny_s2s, seed=12, n_src=8, n_tgt=6)
    target = inputs["decoder_input_ids"][0, 1:].tolist()
    src_spans = [(0, 2), (2, 5), [5, 7]]
    tgt_spans = [(0, 1), (1, 4), (4, 6)]
    r = seq2seq.score_pairs(
        tiny_s2s,
        [source_of(tiny_s2s, inputs)],
        [target],
        source_spans=[src_spans],
        target_spans=tgt_spans,
        methods=["value_zeroing", "attention"],
    )[0]
    spec = encdec_family_for(tiny_s2s.config)
    by_hand = {"encoder": [[0, 1], [2, 3, 4], [5, 7]], "cross": [[0, 1], [2, 3, 4], [5, 7]]}
    by_hand["decoder"] = [[0], [1, 2, 3], [4, 5]]
    for site in SITE_NAMES:
        maps = r.sites[site]
        assert maps.source_spans == by_hand[site]
        assert maps.site.sources.name.endswith("spans") and not maps.site.causal
        ref = reference_site_zeroing(tiny_s2s, spec, inputs, site, spans=by_hand[site])
        np.testing.assert_allclose(maps.scores["value_zeroing"], ref, atol=TOL, rtol=0, err_msg=site)
        np.testing.assert_allclose(maps.scores["attention"].sum(-1), 1.0, atol=1e-6)


def test_waveforms_go_through_the_feature_extractor(tiny_seq2seq_models):
    model = tiny_seq2seq_models["whisper"]
    fe = transformers.WhisperFeatureExtractor(feature_size=8, sampling_rate=16000, hop_length=160)
    fe.n_samples, fe.nb_max_frames = 32 * 160, 32  # the tiny model's window: 32 frames of 10 ms
    handle = seq2seq.load_seq2seq(model, feature_extractor=fe)
    wave = np.sin(np.linspace(0, 300, 4000)).astype(np.float32)
    features = seq2seq.input_features(handle, wave, 16000)
    assert tuple(features.shape) == (8, 32)
    got = seq2seq.score_pairs(handle, [wave], [[5, 6, 2]], sampling_rate=16000, sites=["cross"])[0]
    same = seq2seq.score_pairs(handle, [features.numpy()], [[5, 6, 2]], sites=["cross"])[0]
    np.testing.assert_allclose(got.sites["cross"].scores["value_zeroing"], same.sites["cross"].scores["value_zeroing"])
    assert got.seconds_per_source == pytest.approx(0.02) and got.n_source == 16
    assert seq2seq.time_span(handle, 0.10, 0.25) == (5, 13)
    with pytest.raises(ValueError, match="sampling_rate"):
        seq2seq.score_pairs(handle, [wave], [[5]])
    # Only the frames holding the 0.25 s of audio (13 of the window's 16), each kept entry the reference's.
    audio = seq2seq.score_pairs(
        handle, [wave], [[5, 6, 2]], sampling_rate=16000, frames="audio", methods=["value_zeroing", "attention"]
    )[0]
    assert audio.n_source == 13
    assert audio.sites["encoder"].scores["value_zeroing"].shape[1:] == (13, 13)
    target = audio.target_ids  # the decoder's start token, then the target
    assert audio.sites["cross"].scores["attention"].shape[1:] == (len(target), 13)
    inputs = {"input_features": features[None], "decoder_input_ids": torch.tensor([target])}
    spec = encdec_family_for(model.config)
    for site in ("encoder", "cross"):
        ref = reference_site_zeroing(model, spec, inputs, site, spans=[[j] for j in range(13)])
        rows = 13 if site == "encoder" else len(target)
        np.testing.assert_allclose(audio.sites[site].scores["value_zeroing"], ref[:, :rows], atol=TOL, rtol=0)
    with pytest.raises(ValueError, match="'window' or 'audio'"):
        seq2seq.score_pairs(handle, [wave], [[5]], sampling_rate=16000, frames="speech")
    slow = wave[::2]  # audio at another rate is resampled to the extractor's, as vzcore.audio reads files
    resampled = vzcore.audio.as_audio((slow, 8000), 16000).samples
    np.testing.assert_array_equal(
        seq2seq.input_features(handle, slow, 8000), seq2seq.input_features(handle, resampled, 16000)
    )
    with pytest.raises(vzcore.audio.AudioError, match="longer than"):
        seq2seq.input_features(handle, np.zeros(16000, dtype=np.float32), 16000)  # over the tiny model's 0.32 s
    with pytest.raises(ValueError, match="reads audio"):
        seq2seq.score_pairs(handle, ["some text"], [[5]])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"methods": ["alti"]}, "does not apply to encoder-decoder sites: the norm-based"),
        ({"methods": ["value_zeroing_rollout"]}, "does not apply to encoder-decoder sites: a rollout"),
        ({"methods": ["grad_x_input"]}, "gradient methods"),
        ({"methods": ["nope"]}, "unknown method 'nope'; encoder-decoder sites take: value_zeroing, attention"),
        ({"sites": ["middle"]}, "unknown site 'middle'"),
        ({"layers": [5]}, "layer 5 out of range"),
        ({"layers": {"middle": [0]}}, r"layers given for sites \['middle'\]"),
        ({"distance": "manhattan"}, "unknown distance"),
        ({"source_spans": [(3, 40)]}, r"reaches \[8, 9"),
        ({"source_spans": "words"}, "word alignment"),
    ],
)
def test_bad_arguments_are_clear_errors(tiny_seq2seq_models, kwargs, message):
    with pytest.raises(ValueError, match=message):
        seq2seq.score_pairs(tiny_seq2seq_models["t5"], [[5, 6, 7, 8, 9, 10, 11, 12]], [[4, 1]], **kwargs)


def test_single_stack_scoring_points_encoder_decoders_here(tiny_seq2seq_models):
    import vzcore

    with pytest.raises(vzcore.UnsupportedModelError, match=r"vzcore.seq2seq.score_pairs"):
        vzcore.load_model(tiny_seq2seq_models["t5"])


def test_single_stack_scoring_of_a_seq2seq_handle_says_the_same(tiny_seq2seq_models, tiny_t5_dir):
    import vzcore

    with pytest.raises(vzcore.UnsupportedModelError) as by_path:
        vzcore.score(tiny_t5_dir, ["hello"])
    handle = seq2seq.load_seq2seq(tiny_seq2seq_models["t5"])
    with pytest.raises(vzcore.UnsupportedModelError) as by_handle:  # today: OSError, file name too long
        vzcore.score(handle, ["hello"])
    assert str(by_handle.value) == str(by_path.value) and "vzcore.seq2seq.score_pairs" in str(by_path.value)
    with pytest.raises(TypeError, match="model must be a ModelHandle, a torch module, a name or a path; not int"):
        vzcore.score(3, ["hello"])  # type: ignore[arg-type]


def test_word_spans_come_from_the_tokenizers_alignment():
    from vzcore.loading import resolve_short_name

    try:
        tok = transformers.AutoTokenizer.from_pretrained(resolve_short_name("minilm"))
    except ModuleNotFoundError as e:
        pytest.skip(str(e))
    torch.manual_seed(0)
    cfg = transformers.BartConfig(
        vocab_size=tok.vocab_size,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
        decoder_start_token_id=tok.sep_token_id,
    )
    model = transformers.BartForConditionalGeneration(cfg).eval()
    handle = seq2seq.load_seq2seq(model, tokenizer=tok)
    source, target = "Unbelievable tokenisation works.", "Tokenisation works."
    r = seq2seq.score_pairs(handle, [source], [target], source_spans="words", target_spans="words")[0]
    words = tok(source).word_ids()
    assert r.source_tokens == tok.convert_ids_to_tokens(tok(source)["input_ids"])
    assert r.sites["cross"].source_spans == [list(range(a, b)) for a, b in _word_ranges(words)]
    assert len(r.sites["cross"].source_spans) < len(words)  # some word has several pieces
    dec_words = [None, *tok(text_target=target).word_ids()]  # the start token is a span of its own
    assert r.sites["decoder"].source_spans == [list(range(a, b)) for a, b in _word_ranges(dec_words)]
    inputs = {"input_ids": torch.tensor([r.source_ids]), "decoder_input_ids": torch.tensor([r.target_ids])}
    spec = encdec_family_for(model.config)
    for site in SITE_NAMES:
        ref = reference_site_zeroing(model, spec, inputs, site, spans=r.sites[site].source_spans)
        np.testing.assert_allclose(r.sites[site].scores["value_zeroing"], ref, atol=TOL, rtol=0, err_msg=site)


def _word_ranges(word_ids):
    """Plain grouping: a run of equal word ids is one range; a None is a range of its own."""
    out = []
    for k, w in enumerate(word_ids):
        if out and w is not None and word_ids[k - 1] == w:
            out[-1][1] = k + 1
        else:
            out.append([k, k + 1])
    return out


def test_layers_per_site_and_one_id_target_for_every_source(tiny_seq2seq_models):
    model = tiny_seq2seq_models["mbart"]
    every = seq2seq.score_pairs(model, [[5, 6, 7, 8]], [[9, 10, 2]])[0]
    some = seq2seq.score_pairs(model, [[5, 6, 7, 8], [5, 6, 7, 8]], [9, 10, 2], layers={"encoder": [-1], "cross": 0})
    for r in some:
        assert r.target_ids == every.target_ids == [2, 9, 10, 2]
        assert (r.sites["encoder"].layers, r.sites["decoder"].layers, r.sites["cross"].layers) == ([1], [0, 1], [0])
        for site, picked in (("encoder", [1]), ("decoder", [0, 1]), ("cross", [0])):
            np.testing.assert_allclose(
                r.sites[site].scores["value_zeroing"], every.sites[site].scores["value_zeroing"][picked], atol=TOL
            )


def test_sdpa_loading_gives_the_eager_scores(tiny_s2s):
    from tests.harness.models import tiny_seq2seq

    kind = tiny_s2s.config.model_type
    sdpa = tiny_seq2seq(kind, attn="sdpa")
    inputs = tiny_pair(tiny_s2s, seed=13, n_src=6, n_tgt=5)
    target = inputs["decoder_input_ids"][0, 1:].tolist()
    both = ["value_zeroing", "attention"]
    eager = seq2seq.score_pairs(tiny_s2s, [source_of(tiny_s2s, inputs)], [target], methods=both)[0]
    other = seq2seq.score_pairs(sdpa, [source_of(sdpa, inputs)], [target], methods=both)[0]
    for site in SITE_NAMES:
        for method in both:
            np.testing.assert_allclose(
                other.sites[site].scores[method], eager.sites[site].scores[method], atol=TOL, rtol=0
            )
    assert sdpa.config._attn_implementation == "sdpa"  # switched for the clean pass only


def test_empty_choices_are_refused_in_words_and_one_site_may_be_named_alone(tiny_seq2seq_models):
    model = tiny_seq2seq_models["bart"]
    with pytest.raises(ValueError, match="no layers chosen at the cross site"):
        seq2seq.score_pairs(model, [[5, 6, 7]], [[10, 2]], sites=["cross"], layers=[])
    with pytest.raises(ValueError, match="no spans"):
        seq2seq.score_pairs(model, [[5, 6, 7]], [[10, 2]], sites=["cross"], source_spans=[[]])
    alone = seq2seq.score_pairs(model, [[5, 6, 7]], [[10, 2]], sites="cross")[0]
    assert list(alone.sites) == ["cross"]
