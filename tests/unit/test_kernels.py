"""The compiled per-pair kernels against the torch arithmetic they replace."""

from __future__ import annotations

import pytest
import torch

from vzcore.ops import distances, kernels

pytestmark = pytest.mark.skipif(not kernels.compiled(torch.zeros(1)), reason="numba is not installed")


def _rows(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("a_shape", "b_shape"),
    [((2, 5, 3, 37), (2, 1, 3, 37)), ((11, 64), (11, 64)), ((4, 7, 16), (7, 16))],
)
def test_distances_match_torch(a_shape, b_shape):
    a, b = _rows(*a_shape), _rows(*b_shape, seed=1)
    pairs = [
        (distances.cosine_distance, distances.cosine_torch),
        (distances.euclidean_distance, distances.euclidean_torch),
    ]
    for fast, plain in pairs:
        got, want = fast(a, b), plain(a, b)
        assert got.dtype == torch.float64 and got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


def test_small_cosine_distances_keep_their_digits():
    # rows a rounding step apart: 1 − a·b would return noise around 1e-7, the kernel the distance
    b = _rows(50, 384)
    a = (b + 1e-5 * _rows(50, 384, seed=2))[None]
    got, want = distances.cosine_distance(a, b), distances.cosine_torch(a, b)
    assert 0 < float(want.min()) < 1e-9
    torch.testing.assert_close(got, want, rtol=1e-9, atol=0.0)


def test_identical_rows_are_exactly_zero():
    b = _rows(1, 1, 6, 97)  # an odd width: the vectorised sums' remainder too
    a = b.expand(1, 5, 6, 97).clone()
    a[0, 2, 4] = 0.0  # a zero row meets a nonzero one: distance 1/2 of a unit vector's square
    b0 = b.clone()
    b0[0, 0, 3] = 0.0
    cos = distances.cosine_distance(a, b)
    assert (cos[0, [0, 1, 3, 4]] == 0).all() and (cos[0, 2, [0, 1, 2, 3, 5]] == 0).all()
    torch.testing.assert_close(cos, distances.cosine_torch(a, b), rtol=1e-12, atol=1e-15)
    assert (distances.euclidean_distance(a, b)[0, [0, 1, 3, 4]] == 0).all()
    zero = torch.zeros(3, 8)
    assert (distances.cosine_distance(zero, zero) == 0).all()


def test_other_dtypes_take_the_torch_path():
    a = _rows(4, 8).double()
    assert not kernels.compiled(a)
    torch.testing.assert_close(distances.cosine_distance(a, a.flip(0)), distances.cosine_torch(a, a.flip(0)))
