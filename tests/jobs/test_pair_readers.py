"""Readers of a v5 store (an encoder–decoder's sites) on hand-made stores: the cross statistics, the
aggregate per site, the corpus queries and `vz show`, each equal to its definition computed here by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("zarr")

from typer.testing import CliRunner

from jobs.aggregate import AggregateConfig, aggregate
from jobs.cli import app
from tests.harness.synthetic_store import write_random_pair_store
from vzcore.queries import show_example
from vzcore.queries.corpus import token_rows, top_examples
from vzcore.statistics import is_punctuation
from vzcore.statistics.cross import CrossStats
from vzcore.store import StoreError
from vzcore.store.reader import open_store

runner = CliRunner()


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "p.zarr"
    outs = write_random_pair_store(path, 8, fail_every=5, seed=3)
    return path, [o for o in outs if o.scored]


def test_cross_statistics_of_one_map_by_hand():
    # one layer, two target rows over three sources; source 0 special, source 2 punctuation
    x = np.array([[[0.5, 0.2, 0.3], [0.0, 0.0, 0.0]]])
    y = np.array([[[0.1, 0.2, 0.7], [0.3, 0.3, 0.4]]])
    s = CrossStats(("a", "b"), 1)
    s.add_example({"a": x, "b": y}, [True, False, False], [False, False, True])
    m = s.means()
    assert s.sums["rows"][0, 0] == 2 and s.sums["zero_rows"][0, 0] == 1
    assert m["special_mass"][0, 0] == pytest.approx((0.5 + 0.0) / 2)
    assert m["punct_mass"][1, 0] == pytest.approx((0.7 + 0.4) / 2)
    assert m["max_mass"][0, 0] == pytest.approx(0.5 / 2)
    assert m["peak_position"][1, 0] == pytest.approx((1.0 + 1.0) / 2)  # argmax at the last of 3 sources
    p = np.array([0.5, 0.2, 0.3])
    assert m["entropy"][0, 0] == pytest.approx(-(p * np.log(p)).sum() / np.log(3))  # the zero row left out
    # agreement: row 0 only (row 1 of a is constant); ranks (3,1,2) against (1,2,3): Spearman -0.5
    assert s.agree_count[0, 0] == 1 and m["agreement"][0, 0] == pytest.approx(-0.5)


def _by_hand_cross(outs, method, li):
    """Every cross row's statistics, computed from the written maps directly."""
    special, punct, peak, top, rows = [], [], [], [], 0
    for o in outs:
        x = o.scores[method]["cross"][li].astype(np.float64)
        src_special = np.isin(o.source_ids, [0, 1])
        src_punct = np.asarray([is_punctuation(t) for t in o.source_tokens]) & ~src_special
        for row in x:
            rows += 1
            special.append(row[src_special].sum())
            punct.append(row[src_punct].sum())
            peak.append(np.argmax(row) / (len(row) - 1))
            top.append(row.max())
    return rows, np.mean(special), np.mean(punct), np.mean(peak), np.mean(top)


def test_aggregate_gives_each_site_its_statistics(pairs, tmp_path):
    path, outs = pairs
    summary = aggregate(str(path), tmp_path / "agg", config=AggregateConfig(plots=False), log=lambda *_: None)
    assert summary["examples"] == {"scored": 7, "failed": 1}
    assert {"encoder.layers.parquet", "decoder.layers.parquet", "cross.layers.parquet"} <= set(summary["outputs"])
    cross = pd.read_parquet(tmp_path / "agg" / "cross.layers.parquet")
    assert set(cross.columns).isdisjoint({"self_mass", "context_mass", "prev_mass"})  # no diagonal, no offsets
    for method in ("value_zeroing", "attention"):
        got = cross[(cross.method == method) & (cross.layer == 1)].iloc[0]
        rows, special, punct, peak, top = _by_hand_cross(outs, method, 0)
        assert got["rows"] == rows
        assert got.special_mass == pytest.approx(special) and got.punct_mass == pytest.approx(punct)
        assert got.peak_position == pytest.approx(peak) and got.max_mass == pytest.approx(top)
    enc = pd.read_parquet(tmp_path / "agg" / "encoder.layers.parquet")
    for layer in (0, 1):
        got = enc[(enc.method == "value_zeroing") & (enc.layer == layer) & (enc.bucket == "all")].iloc[0]
        diag = [np.diagonal(o.scores["value_zeroing"]["encoder"][layer]) for o in outs]
        assert got["rows"] == sum(len(d) for d in diag)
        assert got.self_mass == pytest.approx(np.concatenate(diag).mean(), rel=1e-6)
    dec = pd.read_parquet(tmp_path / "agg" / "decoder.layers.parquet")
    got = dec[(dec.method == "attention") & (dec.layer == 0) & (dec.bucket == "all")].iloc[0]
    counted = [r for o in outs for i, r in enumerate(o.scores["attention"]["decoder"][0]) if i >= 1]  # row 0: one entry
    assert got["rows"] == len(counted) and got.single_rows == len(outs)
    assert got.prev_mass == pytest.approx(np.mean([r[i] for o in outs for i, r in
                                                    enumerate(o.scores["attention"]["decoder"][0][1:])]))  # fmt: skip
    report = (tmp_path / "agg" / "report.md").read_text()
    assert "## Site cross" in report and "no diagonal" in report


def test_queries_read_a_square_site_and_refuse_the_store_or_the_cross_site(pairs):
    path, outs = pairs
    store = open_store(path)
    enc = store.site("encoder")
    o = outs[0]
    token = o.source_tokens[1]
    rows = token_rows(enc, token, 1, "value_zeroing")
    want = [(oo.example_id, p) for oo in outs for p, t in enumerate(oo.source_tokens) if t == token]
    got = rows.drop_duplicates(["example_id", "position"])[["example_id", "position"]].values.tolist()
    assert got == [list(w) for w in want]
    first = rows[(rows.example_id == o.example_id) & (rows.position == 1)].weight.to_numpy()
    np.testing.assert_allclose(first, o.scores["value_zeroing"]["encoder"][1][1])
    top = top_examples(store.site("decoder"), "self_mass", "attention", 1, k=2)
    by_hand = {}
    for oo in outs:
        x = oo.scores["attention"]["decoder"][1]
        by_hand[oo.example_id] = np.diagonal(x)[1:].mean()  # rows with at least two valid entries
    best = sorted(by_hand, key=lambda e: -by_hand[e])[:2]
    assert top.example_id.tolist() == best
    np.testing.assert_allclose(top.value.to_numpy(), [by_hand[e] for e in best], rtol=1e-6)
    with pytest.raises(StoreError, match="query one with"):
        token_rows(store, token, 1, "value_zeroing")
    out = runner.invoke(app, ["query", "top", str(path), "--statistic", "self_mass", "--layer", "1", "--site", "cross"])
    assert out.exit_code == 2 and "not square" in out.output


def test_show_draws_every_site_or_one(pairs):
    path, outs = pairs
    store = open_store(path)
    fig = show_example(store, outs[0].example_id)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [f"{s}: {m}, layer {layer}" for s, layer in (("encoder", 1), ("decoder", 1), ("cross", 1))
                      for m in ("value_zeroing", "attention")]  # fmt: skip
    fig = show_example(store, outs[0].example_id, ["attention"], layer=0, site="decoder", words=True)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["attention, layer 0"]
    with pytest.raises(StoreError, match="not in the cross site"):
        show_example(store, outs[0].example_id, layer=0, site="cross")
    with pytest.raises(StoreError, match="--words"):
        show_example(store, outs[0].example_id, words=True)
    png = path.parent / "ex.png"
    out = runner.invoke(app, ["show", str(path), "--example", str(outs[0].example_id), "--out", str(png)])
    assert out.exit_code == 0 and png.stat().st_size > 10_000


def test_a_speech_store_encoder_site_is_drawn_over_frames_and_refuses_words(tmp_path):
    path = tmp_path / "speech.zarr"
    outs = write_random_pair_store(path, 3, audio=True, seed=4)
    eid = outs[0].example_id
    fig = show_example(open_store(path), eid, ["attention"], site="encoder")
    assert [ax.get_xlabel() for ax in fig.axes if ax.get_title()] == ["source j (zeroed / attended frame)"]
    fig = show_example(open_store(path), eid, ["attention"], site="decoder")
    assert [ax.get_xlabel() for ax in fig.axes if ax.get_title()] == ["source j (zeroed / attended token)"]
    png = tmp_path / "w.png"
    args = ["show", str(path), "--example", str(eid), "--site", "encoder", "--words", "--out", str(png)]
    out = runner.invoke(app, args)  # today: drawn over frames, --words silently ignored
    assert out.exit_code == 2 and "runs over audio frames, not words" in out.output and not png.exists()
    out = runner.invoke(app, [*args[:-3], "--out", str(png)])
    assert out.exit_code == 0 and png.exists()


def test_the_viewer_refuses_a_sites_store_in_one_line(pairs, tmp_path):
    path, _ = pairs
    out = runner.invoke(app, ["view", str(path), "--build", str(tmp_path / "site")])
    assert out.exit_code == 2 and "vz show STORE --example ID [--site NAME]" in out.output
    assert not (tmp_path / "site").exists()


def test_cross_rows_are_a_target_tokens_rows_over_the_source(pairs):
    from vzcore.queries.cross import cross_rows

    path, outs = pairs
    store = open_store(path)
    token = outs[1].target_tokens[2]
    got = cross_rows(store, 1, "attention", token=token)
    want = [(o, p) for o in outs for p, t in enumerate(o.target_tokens) if t == token]
    assert got.groupby(["example_id", "position"]).ngroups == len(want)
    for o, p in want:
        mine = got[(got.example_id == o.example_id) & (got.position == p)]
        assert mine.source_token.tolist() == list(o.source_tokens)
        np.testing.assert_allclose(mine.weight.to_numpy(), o.scores["attention"]["cross"][0][p], rtol=1e-6)
    with pytest.raises(StoreError, match="not in the cross site"):
        cross_rows(store, 0, "attention", token=token)
    out = runner.invoke(app, ["query", "rows", str(path), "--token", token, "--layer", "1", "--site", "cross"])
    assert out.exit_code == 0 and f"{len(want)} occurrences" in out.output


def test_an_audio_encoder_site_has_no_token_types(tmp_path):
    write_random_pair_store(tmp_path / "a.zarr", 3, audio=True)
    summary = aggregate(str(tmp_path / "a.zarr"), tmp_path / "agg", config=AggregateConfig(plots=False))
    assert "encoder.layers.parquet" in summary["outputs"] and "decoder.token_types.parquet" in summary["outputs"]
    assert "encoder.token_types.parquet" not in summary["outputs"]
    enc = pd.read_parquet(tmp_path / "agg" / "encoder.layers.parquet")
    enc = enc[enc.bucket == "all"]
    assert (enc.special_mass == 0).all() and (enc.punct_mass == 0).all()  # a frame is neither
