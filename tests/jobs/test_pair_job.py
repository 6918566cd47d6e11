"""`vz score` of an encoder–decoder's text pairs, in this process (`actors=0`): the store holds what
`vzcore.seq2seq.score_pairs` gives for each pair at every site; bad arguments exit 2 before any model loads."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("zarr")
pytest.importorskip("datasets")

from typer.testing import CliRunner

from jobs.cli import app
from jobs.score import run_job
from tests.support import TEXTS, job_config
from vzcore.seq2seq import load_seq2seq, score_pairs
from vzcore.store.reader import open_store

runner = CliRunner()


def pair_config(tmp_path, model, data, **kw):
    return job_config(tmp_path, model, data, source_column="src", target_column="tgt", **kw)


def test_pairs_store_every_site_as_the_library_scores_it(tmp_path, tiny_t5_dir, pairs_jsonl):
    cfg = pair_config(tmp_path, tiny_t5_dir, pairs_jsonl, limit=6, layers=(-1,), site_layers=(("cross", (0,)),))
    s = run_job(cfg)
    assert (s.examples, s.scored, s.skipped, s.failed) == (6, 5, 1, 0)
    store = open_store(tmp_path / "run.zarr")
    assert store.layout == 5 and store.sites == ["encoder", "decoder", "cross"]
    assert [s.layers for s in store.info.site_layouts] == [(1,), (1,), (0,)]
    handle = load_seq2seq(tiny_t5_dir)
    for k in range(6):
        if not TEXTS[k]:
            ex = store.table("examples").to_pandas().set_index("example_id")
            assert ex.loc[k, "status"] == "skipped" and ex.loc[k, "reason"] == "missing text"
            continue
        target = None if k % 4 == 3 else f"Satz {k} ist kurz."
        layers = {"encoder": -1, "decoder": -1, "cross": 0}
        want = score_pairs(handle, [TEXTS[k]], [target], methods=["value_zeroing", "attention"], layers=layers)[0]
        got = store.example(k)
        assert got.target_from == want.target_from == ("greedy" if target is None else "given")
        assert got.source_ids == want.source_ids and got.target_ids == want.target_ids
        for site in ("encoder", "decoder", "cross"):
            for m in ("value_zeroing", "attention"):
                np.testing.assert_allclose(got.sites[site].scores[m], want.sites[site].scores[m], atol=1e-6)
    ex = store.table("examples").to_pandas().set_index("example_id")
    assert ex.loc[3, "decoding"] == "greedy" and ex.loc[0, "decoding"] == "forced"
    assert ex.loc[0, "target_text"] == "Satz 0 ist kurz."
    again = run_job(cfg)
    assert again.parts_run == 0  # resumed: nothing left to do


def test_a_new_method_adds_to_the_pairs_store(tmp_path, tiny_t5_dir, pairs_jsonl):
    run_job(pair_config(tmp_path, tiny_t5_dir, pairs_jsonl, limit=3, methods=("attention",), sites=("cross",)))
    s = run_job(pair_config(tmp_path, tiny_t5_dir, pairs_jsonl, limit=3, methods=("value_zeroing",), sites=("cross",)))
    assert s.parts_run == 1
    store = open_store(tmp_path / "run.zarr")
    assert store.methods == ["attention", "value_zeroing"] and store.sites == ["cross"]
    assert set(store.example(0).sites["cross"].scores) == {"attention", "value_zeroing"}


@pytest.mark.parametrize(
    "extra, said",
    [
        (["--store", "top-k=4"], "--store top-k=4"),
        (["--targets", "last"], "--targets last"),
        (["--sites", "encoder,prefix"], "--sites encoder,prefix"),
        (["--methods", "attention_norm"], "does not apply to encoder-decoder sites"),
        (["--option", "final_norm=false"], "take only distance"),
        (["--layers", "5"], "--layers: layer 5 out of range"),
        (["--target-column", "nope"], "--target-column nope: no such column"),
        (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
        (["--site-layers", "encoder=7"], "--site-layers encoder=7: layer 7 out of range"),
        (["--site-layers", "encoder=5"], "--site-layers encoder=5: layer 5 out of range"),  # today: `encoder=:`
        (["--sites", "encoder,crossx"], "--sites encoder,crossx: unknown site crossx; choose from encoder"),
        (["--sites", "encoder,encoder"], "name each of encoder, decoder, cross at most once"),
        (["--actors", "-1"], "--actors must be at least 0 (0: in this process), not -1"),
        (["--part-size", "0"], "--part-size must be at least 1, not 0"),
        (["--sites", "cross", "--site-layers", "encoder=0"], "--site-layers encoder: not a scored site"),
        (["--site-layers", "encoder"], "--site-layers takes SITE=BLOCKS"),
    ],
)
def test_bad_pair_arguments_exit_2_before_any_model_loads(tmp_path, tiny_t5_dir, pairs_jsonl, extra, said, monkeypatch):
    import jobs.score.pairstep as pairstep

    monkeypatch.setattr(pairstep, "load_seq2seq", lambda *a, **k: pytest.fail("a model was loaded"))
    args = ["score", "--model", tiny_t5_dir, "--dataset", pairs_jsonl, "--source-column", "src"]
    out = runner.invoke(app, [*args, "--out", str(tmp_path / "x.zarr"), "--actors", "0", *extra])
    assert out.exit_code == 2, out.output
    assert said in out.output
    assert not (tmp_path / "x.zarr").exists()


def test_pair_options_on_a_single_stack_model_are_refused(tmp_path, tiny_model_dir, pairs_jsonl):
    args = ["score", "--model", tiny_model_dir, "--dataset", pairs_jsonl, "--source-column", "src"]
    out = runner.invoke(app, [*args, "--out", str(tmp_path / "x.zarr"), "--actors", "0"])
    assert out.exit_code == 2, out.output  # today: "unsupported encoder-decoder model type 'bert'"
    assert f"{tiny_model_dir} is not an encoder-decoder (bert), so --source-column does not apply" in out.output
    out = runner.invoke(app, [*args, "--sites", "cross", "--out", str(tmp_path / "x.zarr"), "--actors", "0"])
    assert out.exit_code == 2 and "so --source-column/--sites do not apply; leave them out" in out.output


def test_dry_run_plans_pairs_and_writes_nothing(tmp_path, tiny_t5_dir, pairs_jsonl):
    s = run_job(pair_config(tmp_path, tiny_t5_dir, pairs_jsonl, limit=8, dry_run=True))
    text = "\n".join(s.plan_lines)
    assert "8 of 12 rows" in text and "6 given (forced), 2 the model's greedy output" in text
    assert not (tmp_path / "run.zarr").exists()


def test_a_larger_limit_scores_only_the_new_rows(tmp_path, tiny_t5_dir, pairs_jsonl):
    first = run_job(pair_config(tmp_path, tiny_t5_dir, pairs_jsonl, limit=6, sites=("decoder",)))
    assert first.planned_parts == 2 and first.parts_run == 2
    more = run_job(pair_config(tmp_path, tiny_t5_dir, pairs_jsonl, limit=9, sites=("decoder",)))
    # parts of 3: the last part is re-planned as it was ([3, 6), still done), and [6, 9) is new
    assert more.planned_parts == 3 and more.parts_run == 1
    assert sorted(i for b in open_store(tmp_path / "run.zarr").iter_examples() for i, _ in b) == [
        k for k in range(9) if TEXTS[k]
    ]


def test_a_part_whose_examples_changed_drops_its_earlier_methods_and_says_so(tmp_path, tiny_t5_dir, pairs_jsonl):
    """Adding a method to a part whose example failed before and scores now rewrites the part: the earlier
    method is gone from it, the completion index says exactly what it holds, the run says to rescore
    (exit 1), and the same command then scores it again."""
    import jobs.score.pairstep as pairstep
    from vzcore.store.completion import read_done
    from vzcore.store.verify import verify_store

    def config(methods):
        return pair_config(tmp_path, tiny_t5_dir, pairs_jsonl, limit=3, methods=methods, sites=("cross",))

    library = pairstep.score_pairs

    def flaky(handle, sources, *args, **kw):  # the first run's example 1 fails (a transient fault)
        if sources[0] == TEXTS[1]:
            raise RuntimeError("out of memory (simulated)")
        return library(handle, sources, *args, **kw)

    pairstep.score_pairs = flaky
    try:
        assert run_job(config(("attention",))).failed == 1
    finally:
        pairstep.score_pairs = library
    s = run_job(config(("value_zeroing",)))
    assert s.dropped == {0: ["attention"]} and s.exit_code == 1
    assert any(line.startswith("TO RESCORE   part 0") for line in s.lines())
    store = open_store(tmp_path / "run.zarr")
    root = store.location.open_group(mode="r")
    assert int(read_done(root, 1)[0]) == store.info.mask_of(["value_zeroing"])  # not attention's bit too
    assert verify_store(str(tmp_path / "run.zarr")) == []  # the index agrees with the parts
    s = run_job(config(("attention", "value_zeroing")))
    assert s.parts_run == 1 and not s.dropped and s.exit_code == 0
    ex = open_store(tmp_path / "run.zarr").example(1)
    assert {"attention", "value_zeroing"} <= set(ex.sites["cross"].scores)


def test_an_out_of_memory_pair_is_retried_with_half_the_budget(tmp_path, tiny_t5_dir):
    import jobs.score.pairstep as pairstep
    from jobs.score.pairstep import PairSpec, score_pair_examples
    from vzcore.store.location import Location
    from vzcore.store.sites import SiteLayout

    handle = load_seq2seq(tiny_t5_dir)
    spec = PairSpec("t5", ("value_zeroing",), "cosine", (SiteLayout("cross", (0,), 2),), 4,
                    Location(str(tmp_path / "s.zarr")), "float32", audio=False, memory_budget=8 << 20)  # fmt: skip
    budgets = []
    library = pairstep.score_pairs

    def tight(*args, memory_budget, **kw):
        budgets.append(memory_budget)
        if len(budgets) < 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return library(*args, memory_budget=memory_budget, **kw)

    pairstep.score_pairs = tight
    try:
        (out,) = score_pair_examples(handle, [0], [{"source": TEXTS[0], "target": "Satz."}], ["value_zeroing"], spec)
    finally:
        pairstep.score_pairs = library
    assert out.scored and budgets == [8 << 20, 4 << 20, 2 << 20]
    want = score_pairs(handle, [TEXTS[0]], ["Satz."], sites=["cross"], layers={"cross": [0]})[0]
    np.testing.assert_allclose(out.scores["value_zeroing"]["cross"], want.sites["cross"].scores["value_zeroing"])


def test_another_pair_run_is_refused_naming_what_a_pair_run_is(tmp_path, tiny_t5_dir, pairs_jsonl):
    from jobs.score.validate import JobError

    run_job(pair_config(tmp_path, tiny_t5_dir, pairs_jsonl, limit=2, sites=("cross",)))
    with pytest.raises(JobError, match=r"another run \(.*sites and their layers, --max-new-tokens, the columns"):
        run_job(pair_config(tmp_path, tiny_t5_dir, pairs_jsonl, limit=2, sites=("cross",), max_new_tokens=3))
