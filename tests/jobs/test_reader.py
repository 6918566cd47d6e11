"""The query API on stores scored by tiny seeded models: examples match `vzcore.score`, batches, find, xarray."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

import torch  # noqa: E402
import transformers  # noqa: E402

import vzcore  # noqa: E402
from tests.harness.synthetic_store import write_scored_store  # noqa: E402
from tests.support import TINY  # noqa: E402
from vzcore.maps import self_site  # noqa: E402
from vzcore.queries import find_examples  # noqa: E402
from vzcore.store.completion import rebuild_index  # noqa: E402
from vzcore.store.layout import part_path  # noqa: E402
from vzcore.store.reader import ExampleNotScoredError, StoreError  # noqa: E402
from vzcore.store.writer import ExampleOutcome, write_part  # noqa: E402

METHODS = ["value_zeroing", "attention", "attention_norm"]
TEXTS = ["Hello, world!", "The cat sat on the mat.", "Why?", "Value zeroing mixes context.", "A dog barked."]
IDS = [[5, 9, 3], [7, 1, 2, 8, 4, 6], [2, 2], [11, 12, 13, 14]]


@pytest.fixture(scope="module")
def bert_store(tmp_path_factory):
    tok = transformers.AutoTokenizer.from_pretrained(vzcore.loading.resolve_short_name("minilm"))
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30522, **TINY)
    handle = vzcore.load_model(transformers.BertModel(cfg).eval(), tokenizer=tok)
    path = tmp_path_factory.mktemp("bert") / "s.zarr"
    write_scored_store(path, handle, TEXTS, METHODS, part_size=2)
    return path, vzcore.score(handle, TEXTS, methods=METHODS)


@pytest.fixture(scope="module")
def gpt2_store(tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4, n_inner=64, n_positions=32)
    handle = vzcore.load_model(transformers.GPT2Model(cfg).eval())
    path = tmp_path_factory.mktemp("gpt2") / "s.zarr"
    write_scored_store(path, handle, IDS, METHODS, part_size=3)
    return path, vzcore.score(handle, IDS, methods=METHODS)


@pytest.mark.parametrize("which", ["bert_store", "gpt2_store"])
def test_example_matches_score(request, which):
    path, results = request.getfixturevalue(which)
    store = vzcore.open_store(path)
    assert store.methods == METHODS and store.layers == [0, 1] and store.complete
    assert store.causal == (which == "gpt2_store") and store.num_examples == len(results)
    for i, want in enumerate(results):
        got = store.example(i)
        assert isinstance(got, vzcore.ScoreResult)
        assert got.tokens == want.tokens and got.token_ids == want.token_ids and got.layers == want.layers
        assert got.word_ids == want.word_ids
        assert got.site == want.site == self_site(causal=which == "gpt2_store")  # the store's one site
        for m in METHODS:
            assert got.scores[m].shape == (2, want.n, want.n) and got.scores[m].dtype == np.float32
            np.testing.assert_allclose(got.scores[m], want.scores[m], atol=5e-4)  # float16 storage
        assert got.scored_rows.all()
        words = got.word_level()
        assert words.scores["attention"].shape[1] == len(words.words)
    if which == "bert_store":
        assert store.example(1).text == TEXTS[1]


def test_xarray_iter_and_find(bert_store):
    path, results = bert_store
    store = vzcore.open_store(str(path))
    ds = store.xarray(1, ["attention", "value_zeroing"])
    assert ds["attention"].dims == ("layer", "target", "source")
    assert list(ds.target_token.values) == results[1].tokens
    np.testing.assert_allclose(ds["value_zeroing"].sel(layer=1).sum("source"), 1.0, atol=2e-3)
    batches = list(store.iter_examples(batch_size=2, methods="attention"))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [i for b in batches for i, _ in b] == list(range(len(TEXTS)))
    assert list(batches[0][0][1].scores) == ["attention"]
    assert [i for b in store.iter_examples(ids=[3, 0]) for i, _ in b] == [0, 3]
    assert find_examples(store, text="cat") == [1]
    assert find_examples(store, token="cat") == [1]
    assert find_examples(store, token=results[1].token_ids[2]) == [1]
    assert find_examples(store, token="[CLS]") == list(range(len(TEXTS)))
    assert find_examples(store, text="o", token="dog") == [4]
    table = store.examples_table()
    assert list(table.status) == ["scored"] * len(TEXTS)
    with pytest.raises(StoreError, match="no method"):
        store.example(0, ["rollout"])
    with pytest.raises(StoreError, match="not in the store's plan"):
        store.example(99)


def test_failed_skipped_and_unfinished_examples(tmp_path):
    path = tmp_path / "f.zarr"
    from tests.harness.synthetic_store import init_root, random_maps

    plan = [{"part": 0, "start": 0, "stop": 3}, {"part": 1, "start": 3, "stop": 5}]
    init_root(path, methods=["attention", "value_zeroing"], layers=[0], causal=False, plan=plan)
    maps = random_maps(np.random.default_rng(0), 1, 3, False)
    ok = ExampleOutcome(
        0,
        tokens=list("abc"),
        token_ids=[4, 5, 6],
        word_ids=[0, 1, 2],
        scores={"attention": maps, "value_zeroing": maps},
    )
    outs = [ok, ExampleOutcome.failed(1, "CUDA out of memory"), ExampleOutcome.failed(2, "empty text", skipped=True)]
    write_part(str(path), 0, outs, ["attention", "value_zeroing"], causal=False, num_maps=1, start=0, stop=3)
    rebuild_index(str(path))  # what a driver does after a part's writer is done
    store = vzcore.open_store(path)
    assert store.done_parts() == [0] and not store.complete
    assert "part 1 [3, 5): not done" in store.describe()
    np.testing.assert_allclose(store.example(0).scores["attention"], maps, atol=5e-4)
    with pytest.raises(ExampleNotScoredError, match=r"example 1 has no maps: failed \(CUDA out of memory\)"):
        store.example(1)
    with pytest.raises(ExampleNotScoredError, match=r"example 2 has no maps: skipped \(empty text\)"):
        store.example(2)
    with pytest.raises(ExampleNotScoredError, match="part 1, which is not usable: not done"):
        store.example(4)
    assert store.table("examples").column("example_id").to_pylist() == [0, 1, 2]  # the done part's rows
    assert find_examples(store, text="a") == []  # written without its texts
    assert find_examples(store, token="b") == [0]
    zarr.open_group(str(path), mode="a")[part_path(0)].attrs["complete"] = ["attention"]
    store = vzcore.open_store(path, check_parts=True)
    assert store.done_parts(["attention"]) == [0] and store.done_parts() == []
    assert list(store.example(0, "attention").scores) == ["attention"]
    with pytest.raises(ExampleNotScoredError, match="done only for"):
        store.example(0)


def test_a_layout_v1_store_still_reads_and_a_run_refuses_to_extend_it(tmp_path, tiny_model_dir, texts_jsonl):
    from jobs.score import JobError, run_job
    from tests.support import job_config
    from vzcore.store.writer import ExampleOutcome, write_part

    path = tmp_path / "v1.zarr"
    root = zarr.open_group(str(path), mode="w")
    root.attrs.update(
        {
            "vz_layout": 1,
            "plan": [{"part": 0, "start": 0, "stop": 1}],
            "methods": ["attention"],
            "layers": [1],
            "num_layers": 2,  # v1's name for the model's layer count
            "causal": False,
        }
    )
    maps = np.full((1, 2, 2), 0.5, dtype=np.float32)
    outcome = ExampleOutcome(0, tokens=["a", "b"], token_ids=[1, 2], word_ids=[0, 1], scores={"attention": maps})
    write_part(str(path), 0, [outcome], ["attention"], causal=False, num_maps=1, start=0, stop=1)
    rebuild_index(str(path))
    store = vzcore.open_store(path)
    assert store.model_num_layers == 2 and store.layers == [1]
    np.testing.assert_array_equal(store.example(0).scores["attention"], maps)
    with pytest.raises(JobError, match="layout v1, written by an older vzcore"):
        run_job(job_config(tmp_path, tiny_model_dir, texts_jsonl, out=str(path), methods=("attention",)))
