"""Word-pooled stores (`--store words`, layout v4): written from hand-made results, read back as
`ScoreResult.word_level()` gave them, verified, aggregated and queried.

Expected values come from the definitions: `word_level()` of the token maps (the one definition of
the pooling), and numbers worked by hand for the statistics.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("zarr")

import vzcore
from jobs.aggregate.driver import PartJob, aggregate_part
from tests.harness.synthetic_store import init_root, plan_parts, random_maps
from vzcore.maps import self_site
from vzcore.queries import show_example, token_rows, top_examples, word_rows
from vzcore.result import ScoreResult, WordResult
from vzcore.statistics import StatsSpec
from vzcore.store.completion import mark_done
from vzcore.store.errors import StoreError
from vzcore.store.forms import FORM_WORDS, StoreForm, parse_store_form
from vzcore.store.layout import part_path
from vzcore.store.location import Location
from vzcore.store.verify import verify_store
from vzcore.store.words import consecutive_words
from vzcore.store.writer import ExampleOutcome, write_part

METHODS = ("value_zeroing", "attention")
WORDS = StoreForm("words")


def result(maps: dict[str, np.ndarray], word_ids, tokens, causal: bool, token_ids=None) -> ScoreResult:
    n = len(tokens)
    first = next(iter(maps.values()))
    return ScoreResult(
        tokens=list(tokens),
        token_ids=token_ids if token_ids is not None else [0, *range(5, 5 + n - 2), 1],
        word_ids=list(word_ids),
        layers=list(range(len(first))),
        scores=maps,
        site=self_site(causal),
        scored_rows=~np.isnan(first[0]).any(-1),
    )


def make_store(path, results, *, causal, layers, targeted=False, dtype="float32", part_size=2):
    """Write `results` as a words store (`ExampleOutcome.from_words`), every part marked done."""
    outcomes = [ExampleOutcome.from_words(i, r, targeted) for i, r in enumerate(results)]
    plan = plan_parts(len(outcomes), part_size)
    methods = list(results[0].scores)
    init_root(
        path, methods=methods, layers=list(range(layers)), causal=causal, plan=plan, special_token_ids=[0, 1],
        store_form=WORDS.to_attr(), targets={"kind": "last"} if targeted else None,
    )  # fmt: skip
    loc = Location(str(path))
    for p in plan:
        outs = outcomes[p["start"] : p["stop"]]
        write_part(
            loc, p["part"], outs, methods, causal=causal, num_maps=layers, start=p["start"], stop=p["stop"],
            store_dtype=dtype, texts=[f"text {o.example_id}" for o in outs], special_ids=[0, 1], form=WORDS,
            targeted=targeted,
        )  # fmt: skip
        mark_done(loc.open_group(mode="r+"), p["part"], (1 << len(methods)) - 1)
    return vzcore.open_store(path)


# Pieces of a WordPiece and a byte-level tokenizer, with their word ids (None: a special token).
WORDPIECE = (["[CLS]", "play", "##ing", "cats", ".", "[SEP]"], [None, 0, 0, 1, 2, None])
BYTE_LEVEL = (["<s>", "Ġcaf", "Ã©", "Ġis", "Ġopen", "Ġnow"], [None, 0, 0, 1, 2, 3])


VOCAB: dict[str, int] = {"[CLS]": 0, "<s>": 0, "[SEP]": 1}  # a piece's id, one per piece (specials: 0, 1)


def random_results(rng, causal: bool, layers: int = 2) -> list[ScoreResult]:
    out = []
    for tokens, word_ids in (WORDPIECE, BYTE_LEVEL, (["[CLS]", "x", "[SEP]"], [None, 0, None])):
        n = len(tokens)
        maps = {m: random_maps(rng, layers, n, causal) for m in METHODS}
        ids = [VOCAB.setdefault(t, 100 + len(VOCAB)) for t in tokens]
        out.append(result(maps, word_ids, tokens, causal, token_ids=ids))
    return out


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_words_store_reads_back_what_word_level_gave(tmp_path, causal, dtype):
    rng = np.random.default_rng(5)
    results = random_results(rng, causal)
    store = make_store(tmp_path / "w.zarr", results, causal=causal, layers=2, dtype=dtype)
    assert store.layout == 4 and store.attrs["store_form"] == {"kind": "words"}
    assert store.part_reader(0).rows.form.tolist() == [FORM_WORDS, FORM_WORDS]
    tol = 1e-7 if dtype == "float32" else 5e-4
    for eid, r in enumerate(results):
        want, got = r.word_level(), store.example(eid)
        assert isinstance(got, WordResult) and got.word_level() is got
        assert got.words == want.words and got.spans == want.spans and got.tokens == r.tokens
        for m in METHODS:
            np.testing.assert_allclose(got.scores[m], want.scores[m], atol=tol)
            np.testing.assert_allclose(got.kept_mass[m], got.scores[m].astype(np.float64).sum(-1), rtol=1e-6)
            if causal:  # words are runs of tokens: the pooled causal map is lower-triangular, stored as such
                w = want.scores[m]
                assert (w[:, np.triu_indices(w.shape[-1], 1)[0], np.triu_indices(w.shape[-1], 1)[1]] == 0).all()
    assert store.example(0).words == ["[CLS]", "playing", "cats", ".", "[SEP]"]
    assert store.example(1).words == ["<s>", "café", "is", "open", "now"]
    assert verify_store(str(tmp_path / "w.zarr")) == []
    show_example(store, 1, None, None, False).savefig(tmp_path / "show.png")  # `vz show` draws the word map


def test_word_level_keeps_each_words_tokens_and_pools_by_its_definition():
    maps = np.asarray([[[0.5, 0.2, 0.3], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]]], np.float32)
    r = result({"value_zeroing": maps}, [None, 0, 0], ["[CLS]", "a", "##b"], False)
    w = r.word_level()
    assert w.words == ["[CLS]", "ab"] and w.spans == [[0], [1, 2]]
    # Source word "ab" sums columns 1 and 2; target word "ab" is the mean of rows 1 and 2.
    np.testing.assert_allclose(w.scores["value_zeroing"][0], [[0.5, 0.5], [0.15, 0.85]], atol=1e-7)


def test_causal_words_that_are_not_runs_of_tokens_are_refused():
    assert consecutive_words(np.asarray([0, 1, 1, 2])) and not consecutive_words(np.asarray([0, 1, 0]))
    maps = {"value_zeroing": np.tril(np.ones((1, 3, 3), np.float32))}
    r = result(maps, [0, 1, 0], ["a", "b", "c"], True, token_ids=[5, 6, 7])
    with pytest.raises(ValueError, match="not lower-triangular"):
        ExampleOutcome.from_words(0, r)
    ExampleOutcome.from_words(0, result(maps, [0, 1, 0], ["a", "b", "c"], False, token_ids=[5, 6, 7]))  # encoder: fine


# One example, a WordPiece text: [CLS] play ##ing . [SEP] -> words [CLS], playing, ., [SEP].
TOKENS = ["[CLS]", "play", "##ing", ".", "[SEP]"]
TOKEN_IDS = [0, 7, 8, 9, 1]
HAND = np.asarray(
    [
        [0.4, 0.2, 0.2, 0.1, 0.1],
        [0.1, 0.3, 0.3, 0.2, 0.1],
        [0.1, 0.1, 0.5, 0.2, 0.1],
        [0.2, 0.2, 0.2, 0.2, 0.2],
        [0.1, 0.1, 0.1, 0.1, 0.6],
    ],
    np.float32,
)[None]
# Its word map by hand: columns of play and ##ing summed, rows of play and ##ing averaged.
HAND_WORDS = np.asarray(
    [
        [0.4, 0.4, 0.1, 0.1],
        [0.1, 0.6, 0.2, 0.1],
        [0.2, 0.4, 0.2, 0.2],
        [0.1, 0.2, 0.1, 0.6],
    ]
)


def hand_store(tmp_path, targeted=False):
    maps = HAND.copy()
    if targeted:  # --targets last: only row 3 (".", the last plain token) scored
        maps[:, [0, 1, 2, 4]] = np.nan
    r = result({"value_zeroing": maps}, [None, 0, 0, 1, None], TOKENS, False, token_ids=TOKEN_IDS)
    return make_store(tmp_path / "h.zarr", [r], causal=False, layers=1, targeted=targeted)


def test_aggregate_and_queries_on_a_hand_made_words_store(tmp_path):
    store = hand_store(tmp_path)
    np.testing.assert_allclose(store.example(0).scores["value_zeroing"][0], HAND_WORDS, atol=1e-7)
    spec = StatsSpec(tuple(store.methods), 1, False)
    stats = aggregate_part(None, PartJob(store.location, store.info, 0, spec))
    sums = stats.sums
    # Four word rows: self 0.4 + 0.6 + 0.2 + 0.6; on the special units [CLS] and [SEP] 0.5 + 0.2 + 0.4 + 0.7;
    # on the punctuation word ".": 0.1 + 0.2 + 0.2 + 0.1; prev (j = i - 1): 0.1 + 0.4 + 0.1.
    want = {"rows": 4, "self_mass": 1.8, "context_mass": 2.2, "special_mass": 1.8, "punct_mass": 0.6, "tokens": 4}
    for name, value in want.items():
        got = sums[name].sum() if name == "tokens" else sums[name][0, 0, 0]
        np.testing.assert_allclose(got, value, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(sums["offset_mass"][0, 0, 0, spec.max_offset], 0.6, atol=1e-6)  # offset j - i = -1
    # Word types: single-token words keep their token's id and piece; "playing" is a type of its own.
    assert {stats.type_tokens[t] for t in stats.type_ids.tolist()} == {"[CLS]", "playing", ".", "[SEP]"}
    assert (stats.type_ids < 0).sum() == 1
    rows = word_rows(store, "playing", 0, "value_zeroing")
    np.testing.assert_allclose(rows["weight"], HAND_WORDS[1], atol=1e-7)
    assert rows["word"].tolist() == ["playing"] * 4 and rows["source_word"].tolist() == [
        "[CLS]",
        "playing",
        ".",
        "[SEP]",
    ]
    assert rows["token_position"].tolist() == [1] * 4 and rows["num_tokens"].tolist() == [2] * 4
    top = top_examples(store, "special_mass", "value_zeroing", 0, k=1)
    np.testing.assert_allclose(top["value"], [1.8 / 4], atol=1e-6)
    top = top_examples(store, "word_mass", "value_zeroing", 0, k=1, word="playing")
    np.testing.assert_allclose(top["value"], [(0.4 + 0.6 + 0.4 + 0.2) / 4], atol=1e-6)
    assert top["length"].tolist() == [5]  # its tokens, as for an example without a hit (not its 4 words)
    for ask in (
        lambda: token_rows(store, "play", 0, "value_zeroing"),
        lambda: word_rows(store, "playing", 0, "value_zeroing", sources="token"),
        lambda: top_examples(store, "token_mass", "value_zeroing", 0, token="play"),
    ):
        with pytest.raises(StoreError, match="pooled to words"):
            ask()


def test_a_targeted_words_store_holds_the_words_of_its_target_rows(tmp_path):
    store = hand_store(tmp_path, targeted=True)
    got = store.example(0)
    assert got.scored_rows.tolist() == [False, False, True, False]
    np.testing.assert_allclose(got.scores["value_zeroing"][0, 2], HAND_WORDS[2], atol=1e-7)
    assert np.isnan(got.scores["value_zeroing"][0, [0, 1, 3]]).all()
    sums = aggregate_part(None, PartJob(store.location, store.info, 0, StatsSpec(("value_zeroing",), 1, False))).sums
    assert sums["rows"][0, 0, 0] == 1
    np.testing.assert_allclose(sums["self_mass"][0, 0, 0], 0.2, atol=1e-6)
    assert verify_store(str(tmp_path / "h.zarr")) == []


def corrupt(path, part, array, values):
    import zarr

    arr = zarr.open_group(str(path), mode="r+")[f"{part_path(part)}/{array}"]
    arr[: len(values)] = values


@pytest.mark.parametrize(
    "array, values",
    [("token_word", [1]), ("word_text", ["nope"]), ("word_offset", [0, 9]), ("scores/value_zeroing", [np.nan])],
)
def test_verify_finds_a_broken_words_part(tmp_path, array, values):
    rng = np.random.default_rng(2)
    make_store(tmp_path / "v.zarr", random_results(rng, False), causal=False, layers=2)
    assert verify_store(str(tmp_path / "v.zarr")) == []
    if array.startswith("scores"):  # a word map's values cut short
        import zarr

        group = zarr.open_group(str(tmp_path / "v.zarr"), mode="r+")[part_path(1)]
        short = group["scores/value_zeroing"][:-1]
        del group["scores/value_zeroing"]
        group.create_array("scores/value_zeroing", shape=short.shape, dtype=short.dtype)[:] = short
    else:
        corrupt(tmp_path / "v.zarr", 1, array, values)
    broken = verify_store(str(tmp_path / "v.zarr"), repair=True)
    assert [b.part for b in broken] == [1]
    assert vzcore.open_store(tmp_path / "v.zarr").done_parts() == [0]


def test_parse_words_and_its_refusals():
    assert parse_store_form("words") == WORDS and WORDS.reduced and WORDS.to_attr() == {"kind": "words"}
    assert StoreForm.from_attr({"kind": "words"}) == WORDS
    for bad in ("words,top-k=8", "words=2", "words ,threshold=0.1"):
        with pytest.raises(ValueError, match="words takes no options"):
            parse_store_form(bad)
    with pytest.raises(ValueError, match="--store must be dense, auto, words or top-k=K,threshold=T; not 'wordsy'"):
        parse_store_form("wordsy")  # a typo, not words with options


def test_an_older_reader_refuses_a_words_store_by_its_form(tmp_path):
    """The form's name is what a reader that does not know it refuses (here: a name this one does not know)."""
    rng = np.random.default_rng(4)
    path = tmp_path / "u.zarr"
    make_store(path, random_results(rng, False)[:1], causal=False, layers=2)
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["store_form"] = {"kind": "words-v2"}
    meta.write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="unknown store form"):
        vzcore.open_store(path)


def test_xarray_and_the_command_line_on_a_words_store(tmp_path):
    from typer.testing import CliRunner

    from jobs.cli.app import app

    store = hand_store(tmp_path)
    ds = store.xarray(0)
    assert ds["value_zeroing"].shape == (1, 4, 4) and ds["target_token"].values.tolist() == store.example(0).words
    runner = CliRunner()
    out = runner.invoke(app, ["show", str(tmp_path / "h.zarr"), "--example", "0", "--out", str(tmp_path / "s.png")])
    assert out.exit_code == 0 and (tmp_path / "s.png").is_file()
    out = runner.invoke(app, ["query", "rows", str(tmp_path / "h.zarr"), "--layer", "0", "--word", "playing"])
    assert out.exit_code == 0 and "playing" in out.output
    out = runner.invoke(app, ["query", "rows", str(tmp_path / "h.zarr"), "--layer", "0", "--token", "play"])
    assert out.exit_code == 2 and "pooled to words" in out.output
    out = runner.invoke(app, ["view", str(tmp_path / "h.zarr"), "--build", str(tmp_path / "site")])
    assert out.exit_code == 2 and "pooled to words" in out.output and not (tmp_path / "site").exists()
    out = runner.invoke(app, ["aggregate", str(tmp_path / "h.zarr"), "--out", str(tmp_path / "agg"), "--actors", "0"])
    assert out.exit_code == 0, out.output
    assert "; words: 4; " in (tmp_path / "agg" / "report.md").read_text()  # its rows are words, not tokens


@pytest.fixture(params=["compiled", "numpy"])
def implementation(request, monkeypatch):
    """Each way `add_block` can run on a words part: the numba kernel and the NumPy path."""
    import vzcore.statistics.block as block
    from vzcore.statistics.kernel import block_kernel

    if request.param == "numpy":
        monkeypatch.setattr(block, "kernel_for", lambda values: None)
    else:
        pytest.importorskip("numba")
        monkeypatch.setattr(block, "kernel_for", lambda values: block_kernel())  # small stores included
    return request.param


@pytest.mark.parametrize("causal", [False, True])
def test_aggregating_a_words_part_equals_the_per_example_reference_over_its_word_maps(tmp_path, causal, implementation):
    """Every row statistic of a words part equals `PartialStats.add_example` over its examples' word maps,
    with the special and punctuation masks of their words written from the definitions."""
    from vzcore.statistics import PartialStats, is_punctuation
    from vzcore.tokens import span_text

    rng = np.random.default_rng(11)
    results = random_results(rng, causal) + random_results(rng, causal)
    store = make_store(tmp_path / "a.zarr", results, causal=causal, layers=2, part_size=6)
    spec = StatsSpec(tuple(store.methods), 2, causal)
    got = aggregate_part(None, PartJob(store.location, store.info, 0, spec))
    want = PartialStats(spec)
    for eid, r in enumerate(results):
        w = store.example(eid)
        special = np.asarray([len(s) == 1 and r.token_ids[s[0]] in (0, 1) for s in w.spans])
        # A word is punctuation when its text is: its pieces decoded together.
        punct = np.asarray([is_punctuation(span_text([r.tokens[k] for k in s])) for s in w.spans]) & ~special
        want.add_example(w.scores, np.arange(len(w.words)), special, punct)
    for name in ("rows", "single_rows", "self_mass", "context_mass", "special_mass", "punct_mass", "zero_rows",
                 "entropy_sum", "entropy_rows", "offset_mass", "agree_sum", "agree_count", "tokens"):  # fmt: skip
        np.testing.assert_allclose(got.sums[name], want.sums[name], atol=1e-9, err_msg=name)
    assert got.sums["rows"].sum() > 0 and got.sums["punct_mass"].sum() > 0 and got.sums["special_mass"].sum() > 0
    # The top examples report each example's length in tokens (as `vz query top` does), not in words.
    top = aggregate_part(None, PartJob(store.location, store.info, 0, StatsSpec(spec.methods, 2, causal, top_k=3)))
    table = top.top.columns(list(spec.methods), [0, 1])
    assert len(table["length"]) and table["length"].tolist() == [results[e].n for e in table["example_id"].tolist()]
    assert any(results[e].n != len(store.example(e).words) for e in table["example_id"].tolist())
