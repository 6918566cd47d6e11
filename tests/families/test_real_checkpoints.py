"""Real checkpoints that install as packages (slow tier): they load offline, GGUF files through the
cache of de-quantised weights (the user's cache folder: minutes the first time, seconds after)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import vzcore
from vzcore.checkpoints import cached_model
from vzcore.loading import dequantise_gguf, resolve_short_name
from vzcore.reference import reference_value_zeroing

pytestmark = pytest.mark.slow

THREE = ["Kristen has fixed this chair.", "The keys to the cabinet are on the table.", "She said that he left."]


def _installed(name: str) -> Path:
    try:
        return Path(resolve_short_name(name))
    except ModuleNotFoundError as e:
        pytest.skip(str(e))


def test_qwen25_goes_through_the_cache_and_matches_the_reference():
    gguf = _installed("qwen2.5-0.5b")  # Qwen2.5-Coder-0.5B-Instruct, Apache-2.0 upstream
    handle = vzcore.load_model("qwen2.5-0.5b")
    assert cached_model(gguf) is not None and vzcore.locate_model("qwen2.5-0.5b").gguf_file is None
    assert handle.family.name == "llama" and handle.model.layers[0].self_attn.v_proj.bias is not None
    for result in vzcore.score(handle, THREE):
        ref = reference_value_zeroing(handle, result.token_ids)
        np.testing.assert_allclose(result.scores["value_zeroing"], ref, atol=1e-5, rtol=0)


def test_second_minilm_matches_the_reference():
    _installed("sre-minilm")
    handle = vzcore.load_model("sre-minilm")
    assert handle.family.name == "bert" and handle.num_layers == 6
    result = vzcore.score(handle, THREE[:1])[0]
    np.testing.assert_allclose(
        result.scores["value_zeroing"], reference_value_zeroing(handle, result.token_ids), atol=1e-5, rtol=0
    )


def test_gemma3_loads_through_the_cache():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = dequantise_gguf(_installed("gemma3-270m"))  # Gemma terms of use
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        logits = model(**tok("The capital of France is", return_tensors="pt")).logits[0, -1]
    assert "Paris" in [tok.decode(i).strip() for i in logits.topk(5).indices]
    try:
        located = vzcore.locate_model("gemma3-270m")
    except vzcore.UnsupportedModelError as e:  # until its family (gemma3_text) is registered
        assert "unsupported model type 'gemma3_text'; supported model types: bert" in str(e)
    else:
        assert located.gguf_file is None and located.config.model_type == "gemma3_text"
