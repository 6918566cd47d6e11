"""Corpus queries: every occurrence of a token or a word at a layer with its row, and the top-k
examples by a per-example statistic, streamed part by part; each checked against reading every
example one by one (`store.example`) and computing the answer by hand."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
pd = pytest.importorskip("pandas")

from typer.testing import CliRunner  # noqa: E402

import vzcore  # noqa: E402
from jobs.cli import app  # noqa: E402
from tests.harness.synthetic_store import init_root, random_maps, write_random_store, write_scored_store  # noqa: E402
from vzcore.queries import token_rows, top_examples, word_rows  # noqa: E402
from vzcore.queries.corpus import WORD_ROW_COLUMNS, WORD_TOKEN_ROW_COLUMNS  # noqa: E402
from vzcore.store import ExampleNotScoredError, StoreError  # noqa: E402
from vzcore.store.completion import rebuild_index  # noqa: E402
from vzcore.store.writer import ExampleOutcome, write_part  # noqa: E402

METHODS = ("value_zeroing", "attention")

# (pieces, word ids): `un ##aff ##able` and `Ġun aff able` are one word of three tokens; `Ġca f Ã ©`
# reads `café` only decoded together (`Ã` and `©` are the two bytes of `é`); `it ##s` is `its`, not `it`.
WORDPIECE = [
    (["[CLS]", "it", "is", "un", "##aff", "##able", ".", "[SEP]"], [-1, 0, 1, 2, 2, 2, 3, -1]),
    (["[CLS]", "It", "said", "it", "[SEP]"], [-1, 0, 1, 2, -1]),
    None,  # a failed example
    (["[CLS]", "café", "it", "##s", "[SEP]"], [-1, 0, 1, 1, -1]),
    (["[CLS]", "no", "hit", "[SEP]"], [-1, 0, 1, -1]),
    (["[CLS]", "the", "un", "##aff", "##able", "chairs", "[SEP]"], [-1, 0, 1, 1, 1, 2, -1]),
]
BYTE_LEVEL = [
    (["<|im_start|>", "It", "Ġis", "Ġun", "aff", "able", "."], [-1, 0, 1, 2, 2, 2, 3]),
    (["Ġit", "Ġsaid", "Ġit"], [0, 1, 2]),
    (["ĠcafÃ©", "Ġca", "f", "Ã", "©"], [0, 1, 1, 1, 1]),
    None,
    (["Ġno", "Ġhit"], [0, 1]),
    (["<|im_start|>", "Ġthe", "Ġun", "aff", "able", "Ġits"], [-1, 0, 1, 1, 1, 2]),
]
SPECIAL = {"[CLS]", "[SEP]", "<|im_start|>"}


def _write_store(path, examples, causal: bool, part_size: int = 2) -> None:
    """Write `examples` (pieces and word ids, or None for a failed one) with seeded random maps."""
    vocab = sorted({p for ex in examples if ex for p in ex[0]}, key=lambda p: (p not in SPECIAL, p))
    ids = {p: k for k, p in enumerate(vocab)}
    rng = np.random.default_rng(1)
    plan = [
        {"part": k, "start": a, "stop": min(a + part_size, len(examples))}
        for k, a in enumerate(range(0, len(examples), part_size))
    ]
    special = [ids[p] for p in SPECIAL if p in ids]
    init_root(path, methods=METHODS, layers=[0, 1], causal=causal, plan=plan, special_token_ids=special)
    for p in plan:
        outs = []
        for i in range(p["start"], p["stop"]):
            if examples[i] is None:
                outs.append(ExampleOutcome.failed(i, "synthetic failure"))
                continue
            pieces, words = examples[i]
            maps = {m: random_maps(rng, 2, len(pieces), causal) for m in METHODS}
            word_ids = [None if w < 0 else w for w in words]
            token_ids = [ids[t] for t in pieces]
            outs.append(ExampleOutcome(i, tokens=pieces, token_ids=token_ids, word_ids=word_ids, scores=maps))
        write_part(
            str(path), p["part"], outs, METHODS, causal=causal, num_maps=2, start=p["start"], stop=p["stop"],
            store_dtype="float32",
        )  # fmt: skip
    rebuild_index(str(path))  # what the driver does after the parts' writers


@pytest.fixture(scope="module", params=["wordpiece", "byte_level"])
def word_store(request, tmp_path_factory):
    """A non-causal store of WordPiece pieces or a causal one of byte-level pieces (never written to)."""
    path = tmp_path_factory.mktemp("words") / f"{request.param}.zarr"
    _write_store(path, WORDPIECE if request.param == "wordpiece" else BYTE_LEVEL, causal=request.param == "byte_level")
    return vzcore.open_store(path)


@pytest.fixture(scope="module", params=[False, True], ids=["encoder", "causal"])
def store(request, tmp_path_factory):
    """A store of 40 random examples in parts of 6 (never written to)."""
    path = tmp_path_factory.mktemp("random") / "c.zarr"
    write_random_store(
        path, 40, methods=METHODS, num_layers=2, part_size=6, lengths=(4, 9), vocab=30, causal=request.param
    )
    return vzcore.open_store(path)


def _every_example(store):
    """Return `(example_id, ScoreResult)` of every scored example, read one at a time."""
    out = []
    for i in range(store.num_examples):
        with contextlib.suppress(ExampleNotScoredError):  # the failed ones
            out.append((i, store.example(i)))
    return out


def _units(r) -> list[list[int]]:
    """Token positions of each word-level unit, by hand: tokens of a word id together, others alone."""
    keys: dict = {}
    for k, w in enumerate(r.word_ids or [None] * r.n):
        keys.setdefault(("w", w) if w is not None else ("t", k), []).append(k)
    return list(keys.values())


def _word_reference(store, word, layer, method, sources, ignore_case=False):
    """Return the rows of every occurrence of `word`, example by example, from `ScoreResult.word_level`."""
    norm = str.casefold if ignore_case else str
    want = []
    for eid, r in _every_example(store):
        view = r.word_level()
        units = _units(r)
        li = r.layers.index(layer)
        for u, label in enumerate(view.words):
            if norm(label) != norm(word):
                continue
            ks = units[u]
            head = (eid, u, label, ks[0], len(ks))
            if sources == "word":
                want += [(*head, j, view.words[j], view.scores[method][li, u, j]) for j in range(len(view.words))]
            else:
                row = r.scores[method][li][ks].mean(0)
                want += [(*head, j, r.tokens[j], r.labels[j], row[j]) for j in range(r.n)]
    return want


def _same_rows(got, want, columns):
    assert list(got.columns) == list(columns)
    rows = list(got.itertuples(index=False, name=None))
    assert len(rows) == len(want)
    for a, b in zip(rows, want, strict=True):
        assert a[:-1] == b[:-1] and a[-1] == pytest.approx(b[-1], rel=1e-5, abs=1e-7)


def test_token_rows_are_every_occurrence_with_its_row(store):
    got = token_rows(store, "w12", layer=-1, method="attention")
    want = []
    for eid, r in _every_example(store):
        for i, t in enumerate(r.tokens):
            if t == "w12":
                want += [(eid, i, j, r.tokens[j], r.scores["attention"][1, i, j]) for j in range(r.n)]
    assert len(want) > 0
    _same_rows(got, want, ["example_id", "position", "source_position", "source_token", "weight"])
    by_id = token_rows(store, 0, layer=0, method="value_zeroing")  # token id 0: the leading [CLS]
    assert set(by_id.position) == {0} and by_id.example_id.nunique() == 40
    none = token_rows(store, "w999", layer=0, method="attention")
    assert none.empty and list(none.columns) == list(got.columns)


@pytest.mark.parametrize("sources", ["word", "token"])
@pytest.mark.parametrize("word", ["unaffable", "it", "café", "said", "absent"])
def test_word_rows_match_the_word_level_view_of_every_example(word_store, word, sources):
    got = word_rows(word_store, word, layer=1, method="value_zeroing", sources=sources)
    want = _word_reference(word_store, word, 1, "value_zeroing", sources)
    _same_rows(got, want, WORD_ROW_COLUMNS if sources == "word" else WORD_TOKEN_ROW_COLUMNS)
    counts = {"unaffable": 2, "it": 2, "café": 1 + word_store.causal, "said": 1}
    assert got.groupby(["example_id", "word_position"]).ngroups == counts.get(word, 0)
    if word == "unaffable":  # three tokens, one row: the mean of theirs; the word's sources sum to 1
        assert set(got.num_tokens) == {3}
        sums = got.groupby(["example_id", "word_position"]).weight.sum()
        np.testing.assert_allclose(sums, 1.0, rtol=1e-5)
    if word == "absent":
        assert got.empty


def test_every_word_is_found_wherever_it_occurs(word_store):
    want: dict[str, set] = {}
    for eid, r in _every_example(word_store):
        for u, label in enumerate(r.word_level().words):
            want.setdefault(label, set()).add((eid, u))
    for label, where in want.items():
        got = word_rows(word_store, label, layer=0, method="attention")
        assert set(zip(got.example_id, got.word_position, strict=True)) == where, label


def test_maps_are_read_only_from_parts_that_hold_a_hit(word_store, monkeypatch):
    from vzcore.store.reader import PartReader

    read, iter_results = [], PartReader.iter_results

    def recorded(self, methods, ids=None, **kw):
        read.append((self.part, None if ids is None else sorted(ids)))
        return iter_results(self, methods, ids=ids, **kw)

    monkeypatch.setattr(PartReader, "iter_results", recorded)
    word_rows(word_store, "unaffable", layer=0, method="attention")
    assert read == [(0, [0]), (2, [5])]  # examples 0 and 5; parts 0 and 2 of [0, 2), [2, 4), [4, 6)
    read.clear()
    top_examples(word_store, "word_mass", method="attention", layer=0, k=10, word="absent")
    assert read == []


def test_word_rows_ignore_case_on_request(word_store):
    exact = word_rows(word_store, "It", layer=0, method="attention")
    folded = word_rows(word_store, "IT", layer=0, method="attention", ignore_case=True)
    assert set(exact.word) == {"It"} and set(folded.word) == {"It", "it"}
    _same_rows(folded, _word_reference(word_store, "it", 0, "attention", "word", ignore_case=True), WORD_ROW_COLUMNS)


def test_word_rows_on_a_real_wordpiece_tokenizer(tiny_model_dir, tmp_path):
    path = tmp_path / "s.zarr"
    handle = vzcore.load_model(tiny_model_dir)  # MiniLM's WordPiece tokenizer splits "unaffable"
    write_scored_store(path, handle, ["The unaffable chairs.", "Chairs are unaffable."], ["attention"], part_size=1)
    store = vzcore.open_store(path)
    got = word_rows(store, "unaffable", layer=-1, method="attention")
    _same_rows(got, _word_reference(store, "unaffable", 1, "attention", "word"), WORD_ROW_COLUMNS)
    assert got.example_id.nunique() == 2 and (got.num_tokens > 1).all()


def _rows(store, r, layer, method):
    """One layer's map, by hand, without the rows that do not count: row 0 of a causal map (one entry)."""
    return r.scores[method][r.layers.index(layer)][1 if store.causal else 0 :]


def _mass_reference(store, method, layer, mask_of):
    values = {}
    for eid, r in _every_example(store):
        m, mask = _rows(store, r, layer, method), mask_of(r)
        values[eid] = float(np.mean(m[:, mask].sum(-1))) if mask.any() else 0.0
    return sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))


def _same_top(got, want, k):
    assert got.example_id.tolist() == [e for e, _ in want[:k]]
    np.testing.assert_allclose(got.value, [v for _, v in want[:k]], rtol=1e-5)


def test_top_examples_by_a_statistic(store):
    got = top_examples(store, "self_mass", method="value_zeroing", layer=1, k=5)
    first = 1 if store.causal else 0
    values = {
        eid: float(np.mean(np.diagonal(r.scores["value_zeroing"][1])[first:])) for eid, r in _every_example(store)
    }
    _same_top(got, sorted(values.items(), key=lambda kv: (-kv[1], kv[0])), 5)
    special = set(store.special_token_ids)
    want = _mass_reference(store, "attention", 0, lambda r: np.isin(r.token_ids, list(special)))
    _same_top(top_examples(store, "special_mass", method="attention", layer=0, k=4), want, 4)


@pytest.mark.parametrize("token", ["w12", 12])
def test_top_examples_by_mass_on_a_token(store, token):
    got = top_examples(store, "token_mass", method="value_zeroing", layer=-1, k=50, token=token)
    want = _mass_reference(
        store, "value_zeroing", 1, lambda r: np.asarray(r.tokens if isinstance(token, str) else r.token_ids) == token
    )
    assert len(got) == 40 and sum(v > 0 for _, v in want) > 0  # every example: those without it score 0
    _same_top(got, want, 50)


@pytest.mark.parametrize("word", ["unaffable", "café", "absent"])
def test_top_examples_by_mass_on_a_word(word_store, word):
    def mask_of(r):
        mask = np.zeros(r.n, dtype=bool)
        for u, label in enumerate(r.word_level().words):
            if label == word:
                mask[_units(r)[u]] = True
        return mask

    got = top_examples(word_store, "word_mass", method="attention", layer=0, k=3, word=word)
    _same_top(got, _mass_reference(word_store, "attention", 0, mask_of), 3)


def test_top_examples_show_each_examples_length_and_text(store):
    got = top_examples(store, "self_mass", method="value_zeroing", layer=1, k=5)
    assert list(got.columns) == ["example_id", "value", "length", "text"]
    for row in got.itertuples():
        assert row.text == f"example {row.example_id}" and row.length == store.example(row.example_id).n


@pytest.mark.parametrize(("statistic", "query"), [("self_mass", {}), ("token_mass", {"token": "w12"})])
def test_top_examples_rank_only_examples_of_at_least_min_tokens(store, statistic, query):
    lengths = {eid: r.n for eid, r in _every_example(store)}
    assert min(lengths.values()) < 7 <= max(lengths.values())
    got = top_examples(store, statistic, method="value_zeroing", layer=1, k=40, min_tokens=7, **query)
    full = top_examples(store, statistic, method="value_zeroing", layer=1, k=40, **query)
    want = full[full.example_id.map(lengths) >= 7]
    assert got.example_id.tolist() == want.example_id.tolist() and len(got) < len(full)
    np.testing.assert_allclose(got.value, want.value)
    assert (got.length >= 7).all()


def test_bad_queries_are_clear_errors(word_store):
    with pytest.raises(StoreError, match="unknown statistic 'nope'; choose from: self_mass"):
        top_examples(word_store, "nope", method="value_zeroing", layer=1)
    with pytest.raises(StoreError, match="layer 7 out of range"):
        token_rows(word_store, "it", layer=7, method="attention")
    with pytest.raises(StoreError, match="store has no method 'rollout'; it holds"):
        word_rows(word_store, "it", layer=0, method="rollout")
    with pytest.raises(StoreError, match="statistic 'token_mass' needs token="):
        top_examples(word_store, "token_mass", method="attention", layer=0)
    with pytest.raises(StoreError, match="statistic 'self_mass' takes no token= or word= \\(given: word\\)"):
        top_examples(word_store, "self_mass", method="attention", layer=0, word="it")
    with pytest.raises(StoreError, match="k must be at least 1"):
        top_examples(word_store, "self_mass", method="attention", layer=0, k=0)
    with pytest.raises(StoreError, match="min_tokens must be at least 1, not 0"):
        top_examples(word_store, "self_mass", method="attention", layer=0, min_tokens=0)
    with pytest.raises(StoreError, match="unknown sources 'tokens'; choose from: word, token"):
        word_rows(word_store, "it", layer=0, method="attention", sources="tokens")
    with pytest.raises(StoreError, match="the word is empty"):
        word_rows(word_store, " ", layer=0, method="attention")


# ---- vz query -------------------------------------------------------------------------------------
runner = CliRunner()


def test_vz_query_rows_prints_a_few_rows_and_writes_them_all(word_store, tmp_path):
    path = str(word_store.path)
    out = runner.invoke(app, ["query", "rows", path, "--word", "unaffable", "--layer", "1", "--limit", "3"])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0] == "word 'unaffable' at layer 1 (value_zeroing): 2 occurrences in 2 examples"
    assert lines[1].split()[:3] == ["example_id", "word_position", "word"] and len(lines) == 6
    assert lines[-1].startswith("... ") and "more rows" in lines[-1]
    table = tmp_path / "rows.parquet"
    args = ["query", "rows", path, "--word", "unaffable", "--layer", "1", "--sources", "token", "--out", str(table)]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    want = word_rows(word_store, "unaffable", 1, "value_zeroing", sources="token")
    pd.testing.assert_frame_equal(pd.read_parquet(table), want, check_dtype=False)
    csv = tmp_path / "tok.csv"
    out = runner.invoke(
        app, ["query", "rows", path, "--token-id", "0", "--layer", "0", "--method", "attention", "--out", str(csv)]
    )
    assert out.exit_code == 0, out.output
    assert len(pd.read_csv(csv)) == len(token_rows(word_store, 0, 0, "attention")) > 0
    out = runner.invoke(app, ["query", "rows", path, "--word", "absent", "--layer", "0"])
    assert out.exit_code == 0 and "0 occurrences in 0 examples" in out.stdout


def test_vz_query_top_shows_the_texts_and_takes_a_minimum_length(store):
    out = runner.invoke(app, ["query", "top", str(store.path), "--layer", "1", "--min-tokens", "7", "-k", "3"])
    assert out.exit_code == 0, out.output
    want = top_examples(store, "self_mass", "value_zeroing", 1, 3, min_tokens=7)
    assert "of at least 7 tokens" in out.stdout.splitlines()[0]
    for eid in want.example_id:
        assert f"example {eid}" in out.stdout
    rows = [line.split() for line in out.stdout.splitlines()[2:]]
    assert [int(r[0]) for r in rows] == want.example_id.tolist() and all(int(r[2]) >= 7 for r in rows)


def test_vz_query_top_prints_the_k_best(word_store):
    path = str(word_store.path)
    out = runner.invoke(
        app,
        ["query", "top", path, "--statistic", "word_mass", "--word", "IT", "--ignore-case", "--layer", "0", "-k", "3"],
    )
    assert out.exit_code == 0, out.output
    want = top_examples(word_store, "word_mass", "value_zeroing", 0, 3, word="IT", ignore_case=True)
    rows = [line.split() for line in out.stdout.splitlines()[2:]]
    assert [int(r[0]) for r in rows] == want.example_id.tolist()
    np.testing.assert_allclose([float(r[1]) for r in rows], want.value, atol=1e-4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rows", "--layer", "0"], "give --word, --token or --token-id"),
        (["rows", "--layer", "0", "--word", "it", "--token", "it"], "not --token and --word"),
        (["rows", "--layer", "0", "--token", "it", "--ignore-case"], "--ignore-case applies to --word only"),
        (["rows", "--layer", "0", "--token", "it", "--sources", "token"], "--sources applies to --word only"),
        (
            ["rows", "--layer", "0", "--word", "it", "--sources", "tokens"],
            "--sources 'tokens': choose from word, token",
        ),
        (["rows", "--layer", "0", "--word", "it", "--out", "rows.txt"], "write a table as .parquet or .csv"),
        (["top", "--layer", "0", "--token", "it", "--out", "top.json"], "write a table as .parquet or .csv"),
    ],
)
def test_vz_query_bad_arguments_exit_2_before_the_store_is_opened(args, message, tmp_path):
    out = runner.invoke(app, ["query", args[0], str(tmp_path / "nothing.zarr"), *args[1:]])
    assert out.exit_code == 2 and message in out.output, out.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rows", "--layer", "0", "--word", "it", "--method", "rollout"], "store has no method 'rollout'"),
        (["rows", "--layer", "7", "--token", "it"], "layer 7 out of range"),
        (["top", "--layer", "0", "--statistic", "nope"], "unknown statistic 'nope'; choose from: self_mass"),
        (["top", "--layer", "0", "--statistic", "token_mass"], "statistic 'token_mass' needs token="),
        (["top", "--layer", "0", "-k", "0"], "k must be at least 1"),
        (["top", "--layer", "0", "--min-tokens", "0"], "min_tokens must be at least 1"),
    ],
)
def test_vz_query_bad_queries_exit_2_before_any_part_is_read(args, message, word_store, monkeypatch):
    from vzcore.store.reader import Store

    monkeypatch.setattr(Store, "done_parts", lambda *a, **kw: pytest.fail("a part was read"))
    out = runner.invoke(app, ["query", args[0], str(word_store.path), *args[1:]])
    assert out.exit_code == 2 and message in out.output, out.output
