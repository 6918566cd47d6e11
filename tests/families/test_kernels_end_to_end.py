"""Value zeroing with the compiled pair passes and in-place activations, end to end against the reference."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import vzcore
from vzcore.ops import kernels
from vzcore.reference import reference_value_zeroing

pytestmark = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba is not installed")


@pytest.fixture(autouse=True)
def _kernels_on(monkeypatch):
    monkeypatch.setenv("VZ_KERNELS", "1")  # the kernels are opt-in
    kernels._compiled.cache_clear()  # read `VZ_KERNELS` again
    yield
    monkeypatch.delenv("VZ_KERNELS")
    kernels._compiled.cache_clear()  # and leave the other tests the default: the torch passes


@pytest.mark.parametrize("kind", ["bert", "llama", "gemma", "opt", "distilbert"])
def test_split_finish_families_score_as_the_reference_with_the_kernels(tiny_models, kind):
    """End to end: the compiled passes and in-place activations against one block call per zeroed token
    (the conformance suite runs the torch passes, the default)."""
    handle = tiny_models[kind]
    ids = [3 + (7 * k) % 90 for k in range(11)]
    for texts in ([ids], [ids, ids[:6]]):  # a padded batch: a mask over the pairs too
        got = vzcore.score(handle, texts)
        for text, result in zip(texts, got, strict=True):
            ref = reference_value_zeroing(handle, text)
            np.testing.assert_allclose(result.scores["value_zeroing"], ref, atol=1e-5, rtol=0)
