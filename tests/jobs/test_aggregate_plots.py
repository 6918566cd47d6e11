"""Aggregate plots of deep models (30 layers): the distance profile's colours, layer-curve panels."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pd = pytest.importorskip("pandas")

import matplotlib.pyplot as plt  # noqa: E402

from jobs.aggregate_plots import CURVES, distance_profiles, layer_curves  # noqa: E402


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
    plt.close(fig)
    few = distance_profiles(_distance_table(6))
    assert few.axes[-1].get_legend() is not None and len(few.axes) == 2  # a legend while it fits
    plt.close(few)


def test_layer_curves_leave_out_statistics_zero_for_every_method():
    fig = layer_curves(_layers_table(30))
    titles = [ax.get_title() for ax in fig.axes if ax.axison]
    assert "special mass" not in titles and "entropy" not in titles
    assert set(titles) == {"self mass", "punct mass", "prev mass", "next mass"}
    assert "special mass" in fig.get_suptitle() and "entropy" in fig.get_suptitle()
    plt.close(fig)
    table = _layers_table(3)
    table.loc[table.method == "attention", "special_mass"] = 0.2  # nonzero for one method: kept
    fig = layer_curves(table)
    assert "special mass" in [ax.get_title() for ax in fig.axes]
    plt.close(fig)
