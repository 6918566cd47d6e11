"""Value zeroing with the compiled pair passes and in-place activations, end to end against the reference."""

from __future__ import annotations

import numpy as np
import pytest

import vzcore
from vzcore.ops import kernels
from vzcore.reference import reference_value_zeroing

pytestmark = pytest.mark.usefixtures("kernels_on")  # numba installed, `VZ_KERNELS=1` (tests/conftest.py)


@pytest.mark.parametrize("kind", ["bert", "llama", "gemma", "opt", "distilbert"])
def test_split_finish_families_score_as_the_reference_with_the_kernels(tiny_models, kind):
    """End to end: the compiled passes and in-place activations against one block call per zeroed token
    (the conformance suite runs the torch passes, the default)."""
    assert kernels.available()  # the fixture turned them on: this test runs them
    handle = tiny_models[kind]
    ids = [3 + (7 * k) % 90 for k in range(11)]
    for texts in ([ids], [ids, ids[:6]]):  # a padded batch: a mask over the pairs too
        got = vzcore.score(handle, texts)
        for text, result in zip(texts, got, strict=True):
            ref = reference_value_zeroing(handle, text)
            np.testing.assert_allclose(result.scores["value_zeroing"], ref, atol=1e-5, rtol=0)
