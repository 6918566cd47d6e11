"""The aggregator against a direct single-pass NumPy computation over the same store, and its bad inputs."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
pd = pytest.importorskip("pandas")

from scipy.stats import spearmanr  # noqa: E402

from jobs.aggregate import AggregateConfig, aggregate  # noqa: E402
from jobs.aggregate.out import OutputError  # noqa: E402
from tests.harness.synthetic_store import init_root, random_maps, write_random_store  # noqa: E402
from vzcore.statistics import is_punctuation  # noqa: E402
from vzcore.statistics.partial import sampled_rows  # noqa: E402
from vzcore.store.completion import rebuild_index  # noqa: E402
from vzcore.store.layout import part_path  # noqa: E402
from vzcore.store.reader import StoreError, open_store  # noqa: E402
from vzcore.store.root import read_plan  # noqa: E402
from vzcore.store.writer import ExampleOutcome, write_part  # noqa: E402

METHODS = ("value_zeroing", "attention", "attention_norm")
CFG = AggregateConfig(bucket_edges=(1, 4, 8, 16), max_offset=3, near_max=2, top_types=10_000, plots=False)


def _edge_case_store(path, causal: bool) -> None:
    """A store with ties, a zero row, an unscored (NaN) row, 1- and 2-token examples, failures, 3 parts."""
    rng = np.random.default_rng(7)
    layers = 2
    names = ["[CLS]", "[SEP]", ".", ",", "a", "b", "c", "d", "e", "f"]
    plan = [{"part": 0, "start": 0, "stop": 5}, {"part": 1, "start": 5, "stop": 9}, {"part": 2, "start": 9, "stop": 12}]
    init_root(path, methods=METHODS, layers=[0, 1], causal=causal, plan=plan, special_token_ids=[0, 1])
    outcomes = []
    for i in range(12):
        if i in (3, 10):
            outcomes.append(ExampleOutcome.failed(i, "too long"))
            continue
        n = [1, 2, 3, 5, 9, 12, 17, 6, 4, 20, 7, 2][i]
        ids = rng.integers(0, len(names), n).tolist()
        scores = {}
        for k, m in enumerate(METHODS):
            maps = random_maps(rng, layers, n, causal)
            if k == 1:
                maps = np.round(maps * 4) / 4  # many ties
            if i == 4 and k == 0:
                maps[1, 2] = 0.0  # an all-zero row
            if i == 7:
                maps[:, 1] = np.nan  # an unscored row (every method)
            scores[m] = maps
        outcomes.append(
            ExampleOutcome(i, tokens=[names[t] for t in ids], token_ids=ids, word_ids=list(range(n)), scores=scores)
        )
    for p in plan:
        write_part(
            str(path),
            p["part"],
            outcomes[p["start"] : p["stop"]],
            METHODS,
            causal=causal,
            num_maps=layers,
            start=p["start"],
            stop=p["stop"],
        )
    rebuild_index(str(path))  # what the driver does after the parts' writers


def _direct(path, cfg: AggregateConfig):
    """Single pass over the store read with plain zarr, one row at a time, with scipy's spearmanr (with
    `cfg.agreement_every` N > 1, over the rows `sampled_rows` draws)."""
    root = zarr.open_group(str(path), mode="r")
    causal, num_layers, special = root.attrs["causal"], len(root.attrs["layers"]), set(root.attrs["special_token_ids"])
    edges = cfg.bucket_edges
    acc: dict = {}
    agree: dict = {}
    types: dict = {}

    def add(key, value, count=1.0):
        s, c = acc.get(key, (0.0, 0.0))
        acc[key] = (s + value, c + count)

    for p in read_plan(root):
        g = root[part_path(p["part"])]
        arr = {name: g[name][:] for name in ("token_offset", "value_offset", "status", "length", "token_ids", "tokens")}
        scores = {m: g[f"scores/{m}"][:] for m in METHODS}
        to, vo = arr["token_offset"], arr["value_offset"]
        for e in range(len(arr["status"])):
            if arr["status"][e] != 0:
                continue
            n = int(arr["length"][e])
            ids = arr["token_ids"][to[e] : to[e + 1]].tolist()
            toks = [str(t) for t in arr["tokens"][to[e] : to[e + 1]]]
            b = max(i for i in range(len(edges)) if edges[i] <= n)
            labels = [f"{a}-{c - 1}" for a, c in itertools.pairwise(edges)] + [f"{edges[-1]}+"]
            bucket = labels[b]
            maps = {}
            for m in METHODS:
                flat = scores[m][vo[e] : vo[e + 1]].astype(np.float64)
                full = np.zeros((num_layers, n, n))
                ti, tj = np.tril_indices(n) if causal else np.indices((n, n)).reshape(2, -1)
                full[:, ti, tj] = flat.reshape(num_layers, -1)
                maps[m] = full
            for m in METHODS:
                for layer in range(num_layers):
                    for bk in ("all", bucket):
                        add((m, layer, bk, "examples"), 1.0, 0)
                    for i in range(n):
                        row = maps[m][layer, i, : i + 1 if causal else n]
                        if np.isnan(row).any():
                            continue
                        k = len(row)
                        if k == 1:  # a single 1: left out of every mass statistic, counted apart
                            for bk in ("all", bucket):
                                add((m, layer, bk, "single_rows"), 1.0, 0)
                                add((m, layer, bk, "zero_rows"), float((row == 0).all()), 0)
                            continue
                        for bk in ("all", bucket):
                            add((m, layer, bk, "self_mass"), row[i])
                            add((m, layer, bk, "context_mass"), row.sum() - row[i])
                            add((m, layer, bk, "special_mass"), sum(row[j] for j in range(k) if ids[j] in special))
                            add(
                                (m, layer, bk, "punct_mass"),
                                sum(row[j] for j in range(k) if ids[j] not in special and is_punctuation(toks[j])),
                            )
                            add((m, layer, bk, "prev_mass"), row[i - 1] if i >= 1 else 0.0)
                            add((m, layer, bk, "next_mass"), row[i + 1] if i + 1 < k else 0.0)
                            add((m, layer, bk, "near_mass"), sum(row[j] for j in range(k) if 2 <= abs(j - i) <= 2))
                            add((m, layer, bk, "far_mass"), sum(row[j] for j in range(k) if abs(j - i) > 2))
                            add((m, layer, bk, "zero_rows"), float((row == 0).all()), 0)
                            if k >= 2 and row.sum() > 0:
                                p_ = row[row > 0] / row.sum()
                                add((m, layer, bk, "entropy"), -(p_ * np.log(p_)).sum() / np.log(k))
                            for j in range(k):
                                d = int(np.clip(j - i, -cfg.max_offset - 1, cfg.max_offset + 1))
                                add((m, layer, bk, "offset", d), row[j])
                        t = types.setdefault((m, layer, ids[i]), [0.0, 0, 0.0, 0])
                        t[0] += row[i]
                        t[1] += 1
                    for j in range(n):  # what source j gives to other scored rows
                        others = [
                            maps[m][layer, i, j]
                            for i in range(n)
                            if i != j and (i >= j or not causal) and not np.isnan(maps[m][layer, i]).any()
                        ]
                        if others:
                            t = types.setdefault((m, layer, ids[j]), [0.0, 0, 0.0, 0])
                            t[2] += np.mean(others)
                            t[3] += 1
            for a_i, a in enumerate(METHODS):
                for c in METHODS[a_i + 1 :]:
                    for layer in range(num_layers):
                        rs = []
                        for i in range(n):
                            k = i + 1 if causal else n
                            row_layer_seed = np.asarray([[i], [layer], [sum(ids)]], dtype=np.uint64)  # wraps silently
                            if not sampled_rows(*row_layer_seed, cfg.agreement_every)[0]:
                                continue
                            x, y = maps[a][layer, i, :k], maps[c][layer, i, :k]
                            if k < 3 or np.isnan(x).any() or np.isnan(y).any() or np.ptp(x) == 0 or np.ptp(y) == 0:
                                continue
                            rs.append(spearmanr(x, y)[0])
                        if rs:
                            for bk in ("all", bucket):
                                s, cnt = agree.get((a, c, layer, bk), (0.0, 0))
                                agree[(a, c, layer, bk)] = (s + np.mean(rs), cnt + 1)
    return acc, agree, types


@pytest.fixture(params=["numpy", "compiled", "compiled-radix"])
def statistics_path(request, monkeypatch):
    """Each way a part's statistics are reduced: NumPy (small stores, or without numba), the compiled kernel
    (ranks counted for short rows), the kernel ranking every row by its radix sort (as rows over `COUNT_MAX`)."""
    import vzcore.statistics.block as block

    if request.param != "numpy":
        pytest.importorskip("numba")
        from vzcore.statistics.kernel import block_kernel

        monkeypatch.setattr(block, "kernel_for", lambda values: block_kernel())
    if request.param == "compiled-radix":
        monkeypatch.setattr(block, "COUNT_MAX", 0)
    return request.param


@pytest.mark.parametrize("causal,every", [(False, 1), (True, 1), (False, 3), (True, 2)])
def test_merged_parts_equal_direct_single_pass(tmp_path, causal, every, statistics_path):
    store = tmp_path / "s.zarr"
    _edge_case_store(store, causal)
    cfg = dataclasses.replace(CFG, agreement_every=every)
    summary = aggregate(str(store), tmp_path / "out", config=cfg, log=lambda *a: None)
    assert summary["parts_used"] == [0, 1, 2] and summary["examples"] == {"scored": 10, "failed": 2}
    acc, agree, types = _direct(store, cfg)
    layers = pd.read_parquet(tmp_path / "out" / "layers.parquet")
    checked = 0
    for r in layers.itertuples():
        if r.examples == 0:
            continue
        rows = acc[(r.method, r.layer, r.bucket, "self_mass")][1]
        assert r.rows == rows
        for col in (
            "self_mass",
            "context_mass",
            "special_mass",
            "punct_mass",
            "prev_mass",
            "next_mass",
            "near_mass",
            "far_mass",
        ):
            assert getattr(r, col) == pytest.approx(
                acc[(r.method, r.layer, r.bucket, col)][0] / rows, rel=1e-12, abs=1e-15
            ), col
        ent_s, ent_c = acc.get((r.method, r.layer, r.bucket, "entropy"), (0.0, 0))
        assert r.entropy_rows == ent_c and r.entropy == pytest.approx(ent_s / ent_c, rel=1e-12)
        assert r.zero_rows == acc[(r.method, r.layer, r.bucket, "zero_rows")][0]
        assert r.single_rows == acc.get((r.method, r.layer, r.bucket, "single_rows"), (0.0, 0))[0]
        checked += 1
    assert checked >= 3 * 2 * 3
    assert layers[(layers.method == "value_zeroing") & (layers.bucket == "all")].zero_rows.sum() == 1
    dist = pd.read_parquet(tmp_path / "out" / "distance.parquet")
    for r in dist[dist.bucket == "all"].itertuples():
        rows = acc[(r.method, r.layer, "all", "self_mass")][1]
        want = acc.get((r.method, r.layer, "all", "offset", r.offset), (0.0, 0))[0] / rows
        assert r.mass == pytest.approx(want, rel=1e-12, abs=1e-15)
    ag = pd.read_parquet(tmp_path / "out" / "agreement.parquet")
    assert {(r.method_a, r.method_b, r.layer, r.bucket) for r in ag.itertuples() if r.sentences} == set(agree)
    for r in ag.itertuples():
        if r.sentences:
            s, cnt = agree[(r.method_a, r.method_b, r.layer, r.bucket)]
            assert r.sentences == cnt and r.spearman == pytest.approx(s / cnt, rel=1e-10)
    tt = pd.read_parquet(tmp_path / "out" / "token_types.parquet")
    for r in tt.itertuples():
        kept, count, given, given_count = types[(r.method, r.layer, r.token_id)]
        assert r.count == count and r.kept == pytest.approx(kept / count, rel=1e-12)
        if given_count:
            assert r.given == pytest.approx(given / given_count, rel=1e-12)


def test_partial_store_aggregates_finished_parts_and_says_so(tmp_path):
    store = tmp_path / "p.zarr"
    write_random_store(store, 40, num_layers=2, part_size=10, lengths=(3, 9))
    g = zarr.open_group(str(store), mode="a")
    g[part_path(1)].attrs["complete"] = ["attention"]  # only one method done
    g[part_path(3)].attrs.update({"start": 31, "stop": 40})  # left over from another plan
    rebuild_index(str(store))  # as the next run's driver would, from the parts' own attributes
    opened = open_store(store, check_parts=True)
    assert opened.done_parts() == [0, 2]
    text = opened.describe()
    assert "part 1 [10, 20): done only for attention" in text and "part 3 [30, 40)" in text
    assert "different run or plan" in text
    assert opened.done_parts(["attention"]) == [0, 1, 2]
    logs: list[str] = []
    summary = aggregate(str(store), tmp_path / "agg", config=CFG, log=logs.append)
    assert summary["parts_used"] == [0, 2] and not summary["complete"]
    assert set(summary["parts_skipped"]) == {"1", "3"}
    assert any("aggregating 2 of 4 parts" in line for line in logs)
    assert "Partial store" in (tmp_path / "agg" / "report.md").read_text()
    with pytest.raises(StoreError, match="part 1, which is not usable: done only for"):
        opened.example(12)


def test_bad_stores_give_clear_messages(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        open_store(tmp_path / "missing.zarr")
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(StoreError, match="not a vz store"):
        open_store(tmp_path / "plain.zarr")
    old = zarr.open_group(str(tmp_path / "old.zarr"), mode="w")
    old.attrs["vz_layout"] = 0
    with pytest.raises(StoreError, match="layout v0; this vzcore reads v1"):
        open_store(tmp_path / "old.zarr")
    started = tmp_path / "started.zarr"
    init_root(started, methods=["attention"], layers=[0], causal=False, plan=[{"part": 0, "start": 0, "stop": 3}])
    assert "part 0 [0, 3): not done" in open_store(started).describe()
    with pytest.raises(StoreError, match="nothing to aggregate"):
        aggregate(str(started), tmp_path / "a", config=CFG, log=lambda *a: None)


def test_out_dir_of_another_run_is_refused(tmp_path):
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    write_random_store(a, 6, num_layers=1, part_size=3, lengths=(3, 5))
    write_random_store(b, 6, num_layers=1, part_size=3, lengths=(3, 5))
    zarr.open_group(str(b), mode="a").attrs["identity"] = {"attention": "other"}
    aggregate(str(a), tmp_path / "out", config=CFG, log=lambda *a: None)
    aggregate(str(a), tmp_path / "out", config=CFG, log=lambda *a: None)  # same run: fine
    with pytest.raises(OutputError, match="aggregate of another store"):
        aggregate(str(b), tmp_path / "out", config=CFG, log=lambda *a: None)
    aggregate(str(b), tmp_path / "out", config=CFG, overwrite=True, log=lambda *a: None)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["identity"] == {"attention": "other"}


def test_cli_aggregate_and_show(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from jobs.cli import app

    store = tmp_path / "s.zarr"
    write_random_store(store, 8, num_layers=2, part_size=4, lengths=(4, 7), fail_every=5)
    runner = CliRunner()
    res = runner.invoke(app, ["aggregate", str(store), "--out", str(tmp_path / "agg")])
    assert res.exit_code == 0, res.output
    assert " from 2 parts in " in res.output
    one = tmp_path / "one.zarr"
    write_random_store(one, 3, num_layers=1, part_size=4, lengths=(4, 5))
    res = runner.invoke(app, ["aggregate", str(one), "--out", str(tmp_path / "agg1"), "--no-plots"])
    assert res.exit_code == 0 and " from 1 part in " in res.output, res.output  # today: "from 1 parts"
    for name in (
        "layers.parquet",
        "distance.parquet",
        "agreement.parquet",
        "token_types.parquet",
        "report.md",
        "summary.json",
        "layer_curves.png",
        "distance_profile.png",
        "agreement.png",
        "length_buckets.png",
    ):
        assert (tmp_path / "agg" / name).stat().st_size > 0, name
    res = runner.invoke(
        app,
        [
            "show",
            str(store),
            "--example",
            "2",
            "--method",
            "attention",
            "--layer",
            "1",
            "--words",
            "--out",
            str(tmp_path / "fig.png"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "fig.png").stat().st_size > 0
    res = runner.invoke(app, ["show", str(store), "--example", "4"])
    assert res.exit_code == 2 and "example 4 has no maps: failed (synthetic failure)" in res.output
    res = runner.invoke(app, ["aggregate", str(tmp_path / "nope.zarr")])
    assert res.exit_code == 2 and "no store at" in res.output


def test_cli_sampled_agreement_is_recorded_and_a_bad_sample_refused(tmp_path):
    from typer.testing import CliRunner

    from jobs.cli import app

    store = tmp_path / "s.zarr"
    write_random_store(store, 8, num_layers=2, part_size=4, lengths=(4, 7))
    runner = CliRunner()
    res = runner.invoke(app, ["aggregate", str(store), "--agreement-every", "0"])
    assert res.exit_code == 2 and not (tmp_path / "s.zarr.aggregate").exists(), res.output
    args = ["--out", str(tmp_path / "a"), "--agreement-every", "3", "--no-plots"]
    res = runner.invoke(app, ["aggregate", str(store), *args])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["config"]["agreement_every"] == 3
    assert "one row in 3" in (tmp_path / "a" / "report.md").read_text()


def test_blocks_read_ahead_in_order_and_a_read_error_reaches_the_part():
    """A part's next block is read in a thread while this one is reduced: the same blocks in the same
    order, and a block that cannot be read fails the part as it did when read in turn."""
    from jobs.aggregate.driver import _read_ahead

    assert list(_read_ahead(iter([(0, "a"), (1, "b"), (2, "c")]))) == [(0, "a"), (1, "b"), (2, "c")]

    def damaged():
        yield (0, "a")
        raise StoreError("part 3: cannot read scores/attention")

    got = []
    with pytest.raises(StoreError, match="cannot read"):
        for item in _read_ahead(damaged()):
            got.append(item)
    assert got == [(0, "a")]
