"""Aggregate plots of deep models (30 layers): the distance profile's colours, layer-curve panels."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pd = pytest.importorskip("pandas")

import matplotlib.pyplot as plt  # noqa: E402

from jobs.aggregate.plots import CURVES, distance_profiles, layer_curves  # noqa: E402


def _layers_table(num_layers: int, methods=("value_zeroing", "attention")) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for m in methods:
        for layer in range(num_layers):
            row = {"method": m, "layer": layer, "bucket": "all"} | {c: rng.random() for c in CURVES}
            row["special_mass"] = 0.0  # SmolLM2's tokenizer adds no special tokens
            row["entropy"] = np.nan  # undefined everywhere (e.g. single-token examples only)
            rows.append(row)
    return pd.DataFrame(rows)


def _distance_table(num_layers: int, methods=("value_zeroing", "attention")) -> pd.DataFrame:
    rows = [
        {
            "method": m,
            "layer": layer,
            "bucket": "all",
            "offset": off,
            "overflow": abs(off) == 4,
            "mass": 1 / (1 + abs(off)),
        }
        for m in methods
        for layer in range(num_layers)
        for off in range(-4, 5)
    ]
    return pd.DataFrame(rows)


def test_distance_profile_of_30_layers_has_a_colour_bar_and_distinct_colours():
    fig = distance_profiles(_distance_table(30))
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 2 and all(ax.get_legend() is None for ax in fig.axes)
    bars = [ax for ax in fig.axes if ax not in panels]
    assert len(bars) == 1 and bars[0].get_ylabel() == "layer"  # the colour bar
    for ax in panels:
        colours = {tuple(line.get_color()) for line in ax.get_lines()}
        assert len(ax.get_lines()) == 30 and len(colours) == 30  # today: 10 colours repeat

    few = distance_profiles(_distance_table(6))
    assert few.axes[-1].get_legend() is not None and len(few.axes) == 2  # a legend while it fits


def test_layer_curves_leave_out_statistics_zero_for_every_method():
    fig = layer_curves(_layers_table(30))
    titles = [ax.get_title() for ax in fig.axes if ax.axison]
    assert "special mass" not in titles and "entropy" not in titles
    assert set(titles) == {"self mass", "punct mass", "prev mass", "next mass"}
    assert "special mass" in fig.get_suptitle() and "entropy" in fig.get_suptitle()

    table = _layers_table(3)
    table.loc[table.method == "attention", "special_mass"] = 0.2  # nonzero for one method: kept
    fig = layer_curves(table)
    assert "special mass" in [ax.get_title() for ax in fig.axes]


def test_aggregate_and_evaluation_plots_change_no_backend_and_no_pyplot_state(tmp_path):
    import matplotlib

    from jobs.aggregate.plots import agreement_heatmap, length_buckets
    from jobs.evaluate.report import _heatmap, _spearman_plot

    agreement = pd.DataFrame(
        [{"method_a": "a", "method_b": "b", "layer": k, "bucket": "all", "spearman": 0.5} for k in range(3)]
    )
    layers = _layers_table(3).assign(bucket="1-8", examples=4)
    summary = pd.DataFrame(
        [
            {"phenomenon": "all", "method": m, "layer": k, "mean": 0.3, "std": 0.1, "random": 0.2, "rollout": False}
            for m in ("a", "b")
            for k in range(3)
        ]
    )
    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a backend other than Agg, as a notebook's inline one is
    try:
        figures = plt.get_fignums()
        drawn = [layer_curves(_layers_table(3)), distance_profiles(_distance_table(3)), agreement_heatmap(agreement)]
        drawn.append(length_buckets(layers))
        _heatmap(summary, tmp_path / "h.png", "cue")  # today: switched the process to Agg
        _spearman_plot(summary, tmp_path / "s.png", "agreement")
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == figures  # plain Figures: nothing for pyplot to show or leak
        assert all((tmp_path / f).read_bytes()[:4] == b"\x89PNG" for f in ("h.png", "s.png"))
        assert all(fig.axes for fig in drawn)
    finally:
        matplotlib.use(before)
