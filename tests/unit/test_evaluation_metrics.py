"""The evaluation metrics on inputs whose answers are computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from vzcore.evaluation.metrics import accuracy, bootstrap_ci, cue_share, random_share, rank, spearman


def test_cue_share_of_a_known_map():
    rows = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.0, 0.0]])  # `[layers, n]`
    share = cue_share(rows, [1, 3])
    assert share[0] == pytest.approx(0.6) and share[1] == pytest.approx(0.5)
    assert np.isnan(share[2])  # a zero row has no share
    assert cue_share(np.array([2.0, 1.0, 1.0]), [0]) == pytest.approx(0.5)  # unnormalised rows are normalised
    assert np.isnan(cue_share(np.array([np.nan, 1.0]), [1]))  # an unscored row stays NaN


def test_random_baseline_is_cues_over_positions_and_matches_sampling():
    assert random_share(10, 2) == pytest.approx(0.2)
    rng = np.random.default_rng(0)
    rows = rng.dirichlet(np.ones(10), size=20000)  # uniformly random normalised rows
    assert cue_share(rows, [3, 7]).mean() == pytest.approx(0.2, abs=0.005)
    with pytest.raises(ValueError):
        random_share(3, 0)


def test_bootstrap_interval_brackets_the_mean_and_shrinks_with_data():
    x = np.r_[np.zeros(50), np.ones(50)]
    lo, hi = bootstrap_ci(x)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.2, abs=0.05)  # 2 · 1.96 · 0.05
    lo4, hi4 = bootstrap_ci(np.tile(x, 4))
    assert hi4 - lo4 < (hi - lo) * 0.6
    assert bootstrap_ci([np.nan, 2.0, 2.0]) == (2.0, 2.0)


def test_spearman_of_known_vectors():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1,2,3,4) vs (2,1,4,3): d = (1,1,1,1), rho = 1 - 6·4 / (4·15) = 0.6
    assert spearman([0.1, 0.2, 0.3, 0.4], [0.5, 0.1, 0.9, 0.7]) == pytest.approx(0.6)
    assert rank([3, 1, 3]) == pytest.approx([2.5, 1, 2.5])
    # with ties: ranks x (1, 2.5, 2.5, 4), y (1, 2, 3, 4): Pearson of the ranks = 4.5 / sqrt(4.5 · 5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / np.sqrt(4.5 * 5))
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_accuracy_leaves_out_undecided_pairs():
    acc, n = accuracy([2.0, 1.0, np.nan, 0.5], [1.0, 3.0, 1.0, 0.1])
    assert (acc, n) == (pytest.approx(2 / 3), 3)
