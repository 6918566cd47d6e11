"""The compiled per-pair kernels against the torch arithmetic they replace."""

from __future__ import annotations

import pytest
import torch

from vzcore.families import NormKind
from vzcore.ops import distances, kernels
from vzcore.ops.norms import NormParams
from vzcore.ops.pairs import gather_rows
from vzcore.ops.zeroing import BlockAlgebra, _compiled_pairs, _torch_pairs

pytestmark = pytest.mark.usefixtures("kernels_on")  # numba installed, `VZ_KERNELS=1` (tests/conftest.py)


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


def _algebra(kind: NormKind, projections: int, b: int = 2, n: int = 5, heads: int = 3, d: int = 24, width: int = 40):
    g = torch.Generator().manual_seed(3)
    scale = torch.rand(d, generator=g) + 0.5
    bias = torch.randn(d, generator=g) if kind is NormKind.LAYER_NORM else None
    proj_u = [torch.randn(b, n, heads + 1, width, generator=g) for _ in range(projections)]
    return BlockAlgebra(
        u=torch.randn(b, n, heads, d, generator=g),
        s=torch.randn(b, n, d, generator=g) * 3 + 1,
        proj_s=[torch.randn(b, n, width, generator=g) for _ in range(projections)],
        values=torch.randn(b, n, heads, 4, generator=g),
        head_maps=[torch.randn(width, heads, 4, generator=g) for _ in range(projections)],
        proj_bias=[pu[0, 0, heads] for pu in proj_u],  # the bias row every source carries
        norm=NormParams(kind, scale, bias, 1e-5),
        proj_u=[pu.clone() for pu in proj_u],
    )


@pytest.mark.parametrize("kind", [NormKind.LAYER_NORM, NormKind.RMS_NORM])
@pytest.mark.parametrize("projections", [1, 2])
@pytest.mark.parametrize("masked", [False, True])
def test_compiled_pair_passes_match_torch(kind, projections, masked):
    alg = _algebra(kind, projections)
    b, n, heads = alg.u.shape[:3]
    for proj in alg.proj_u or []:
        proj[..., heads, :] = proj[0, 0, heads]  # W β + b: the same for every source, as `projected` makes it
    t = 4
    g = torch.Generator().manual_seed(4)
    rows = torch.stack([torch.randperm(n, generator=g)[:t] for _ in range(b)])
    a = torch.rand(b * n, t, heads, generator=g)
    a[3, 1] = 0.0  # a pair with no attention to take away: exactly its clean row
    s_rows = gather_rows(alg.s, rows)
    p_rows = [gather_rows(ps, rows) for ps in alg.proj_s]
    valid = torch.rand(b, n, t, generator=g) > 0.4 if masked else None
    flat = None if valid is None else valid.flatten().nonzero().squeeze(1)
    want_s, want_first, want_clean = _torch_pairs(alg, a, s_rows, p_rows, flat)
    got_s, got_first, got_clean = _compiled_pairs(alg, a, s_rows, p_rows, None if flat is None else flat.clone())
    torch.testing.assert_close(got_s, want_s, rtol=1e-5, atol=1e-5)
    for got, want in zip([*got_first, *got_clean], [*want_first, *want_clean], strict=True):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    if not masked:  # pair (text 0, source 3, slot 1) had all its weights at 0
        for got, clean in zip(got_first, got_clean, strict=True):
            assert torch.equal(got.view(b, n, t, -1)[0, 3, 1], clean.view(b, t, -1)[0, 1])
        assert torch.equal(got_s.view(b, n, t, -1)[0, 3, 1], s_rows[0, 1])


def test_kernels_are_opt_in_and_never_switch_on_by_themselves(monkeypatch):
    """Only `VZ_KERNELS=1` runs them: a process's earlier work never changes its arithmetic (it made one
    job write other bytes in-process than in a fresh Ray actor)."""
    x = torch.zeros(2)
    try:
        for mode in (None, "0", "yes"):
            if mode is None:
                monkeypatch.delenv("VZ_KERNELS", raising=False)
            else:
                monkeypatch.setenv("VZ_KERNELS", mode)
            kernels._compiled.cache_clear()
            assert not any(kernels.compiled(x) for _ in range(3))
        monkeypatch.setenv("VZ_KERNELS", "1")
        kernels._compiled.cache_clear()
        assert kernels.compiled(x) and not kernels.compiled(torch.zeros(2, dtype=torch.float64))
    finally:
        kernels._compiled.cache_clear()


def test_family_specs_with_split_finishes_pickle():
    """A spec is data: standard pickle (multiprocessing, torch.save of a handle) must take it."""
    import pickle

    from vzcore.families import family_specs

    specs = {spec.name: spec for spec in family_specs()}
    for name in ("bert", "distilbert", "llama", "opt"):
        assert pickle.loads(pickle.dumps(specs[name])).name == name
