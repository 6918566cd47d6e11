"""Every fixture of the suite, in one place: tiny seeded models of every supported family (built
from configs), the real MiniLM, a tiny saved BERT with MiniLM's tokenizer, small datasets, one
loopback Ray cluster per session and a local S3 server (both started here, stopped by process id)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import functools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import transformers

import vzcore
from tests.harness.models import (
    AUDIO_KINDS,
    FAMILY_KINDS,
    SEQ2SEQ_KINDS,
    tiny_audio_model,
    tiny_model,
    tiny_seq2seq,
)
from tests.support import TEXTS, TINY, free_port

# Where the tiny models live: "cpu" (default) or e.g. "cuda" to run the suite on a GPU.
DEVICE = os.environ.get("VZ_TEST_DEVICE", "cpu")


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, vzcore.ModelHandle]:
    """One tiny handle per model type (never mutate these)."""
    return {kind: vzcore.load_model(tiny_model(kind, device=DEVICE)) for kind in FAMILY_KINDS}


@pytest.fixture(scope="session", params=FAMILY_KINDS)
def tiny(request, tiny_models) -> vzcore.ModelHandle:
    return tiny_models[request.param]


@pytest.fixture(scope="session")
def tiny_seq2seq_models() -> dict[str, torch.nn.Module]:
    """One tiny seeded `*ForConditionalGeneration` model per encoder–decoder type (never mutate these)."""
    return {kind: tiny_seq2seq(kind, device=DEVICE) for kind in SEQ2SEQ_KINDS}


@pytest.fixture(scope="session", params=SEQ2SEQ_KINDS)
def tiny_s2s(request, tiny_seq2seq_models) -> torch.nn.Module:
    return tiny_seq2seq_models[request.param]


@pytest.fixture(scope="session")
def tiny_audio_models() -> dict[str, vzcore.ModelHandle]:
    """One tiny seeded audio encoder handle per kind: wav2vec2 and HuBERT, post- and pre-norm (never mutate these)."""
    return {kind: vzcore.load_model(tiny_audio_model(kind, device=DEVICE)) for kind in AUDIO_KINDS}


@pytest.fixture(scope="session", params=AUDIO_KINDS)
def tiny_audio(request, tiny_audio_models) -> vzcore.ModelHandle:
    return tiny_audio_models[request.param]


@pytest.fixture(scope="session")
def tiny_builder():
    """Build a fresh tiny model of a kind (e.g. with another attention implementation)."""
    return functools.partial(tiny_model, device=DEVICE)


@pytest.fixture(scope="session")
def minilm() -> vzcore.ModelHandle:
    try:
        return vzcore.load_model("minilm")
    except ModuleNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A 2-layer seeded BERT saved with the real MiniLM tokenizer: loadable by path in any process."""

    from vzcore.loading import resolve_short_name

    tok = transformers.AutoTokenizer.from_pretrained(resolve_short_name("minilm"))
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=tok.vocab_size, max_position_embeddings=64, **TINY)
    path = tmp_path_factory.mktemp("tiny-bert")
    transformers.BertModel(cfg).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory) -> str:
    """A tiny seeded T5 (`tiny_seq2seq("t5")`'s shape) saved with the real MiniLM tokenizer: loadable by path."""
    from tests.harness.models import save_tiny_t5
    from vzcore.loading import resolve_short_name

    tok = transformers.AutoTokenizer.from_pretrained(resolve_short_name("minilm"))
    return save_tiny_t5(tmp_path_factory.mktemp("tiny-t5"), tok)


@pytest.fixture(scope="session")
def pairs_jsonl(tmp_path_factory) -> str:
    """Text pairs: `src` and `tgt` (every fourth target null: greedy), one blank source (skipped)."""
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    rows = [{"src": t, "tgt": None if k % 4 == 3 else f"Satz {k} ist kurz."} for k, t in enumerate(TEXTS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The real SmolLM2 tokenizer (byte-level BPE, read from its GGUF file: about 15 s)."""
    try:
        return vzcore.locate_model("smollm2").load_tokenizer()
    except ModuleNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def tiny_smollm2_dir(tmp_path_factory, smollm2_tokenizer) -> str:
    """A 2-layer seeded LLaMA saved with the real SmolLM2 tokenizer: a byte-level BPE model loadable by path."""

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=len(smollm2_tokenizer), num_key_value_heads=2, max_position_embeddings=64, **TINY
    )
    path = tmp_path_factory.mktemp("tiny-smollm2")
    transformers.LlamaModel(cfg).eval().save_pretrained(path)
    smollm2_tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if any model's weights load (bad arguments must be refused before)."""

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(vzcore, "load_model", no_load)


@pytest.fixture(scope="session")
def texts_jsonl(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t, "n": k}) + "\n" for k, t in enumerate(TEXTS)))
    return str(path)


# Fixtures that start another process: a test that uses one belongs to the slow tier.
PROCESS_FIXTURES = ("ray_cluster", "s3_server")


def pytest_collection_modifyitems(items):
    """Mark slow every test that starts a server (a Ray cluster, an S3 server), whatever its file says."""
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in PROCESS_FIXTURES):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole session, started as the job starts its own (loopback
    only, token authentication on); the jobs join it."""
    ray = pytest.importorskip("ray")
    from cluster.connect import connect

    with connect(None, num_cpus=2):
        yield ray


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server started here (ended by its process id) and a bucket; yields storage options."""
    pytest.importorskip("moto")
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    server = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
    try:
        for _ in range(300):
            try:
                boto3.client("s3", endpoint_url=endpoint, **creds).create_bucket(Bucket="vzstore")
                break
            except Exception:
                time.sleep(0.1)
        else:
            pytest.fail("moto server did not start")
        yield {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint}}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def kernels_on(monkeypatch):
    """The compiled pair kernels on for one test (they are opt-in: `VZ_KERNELS=1`), skipped without numba;
    off again after it, so the other tests run the default torch passes."""
    import importlib.util

    from vzcore.ops import kernels

    if importlib.util.find_spec("numba") is None:
        pytest.skip("numba is not installed")
    monkeypatch.setenv("VZ_KERNELS", "1")
    kernels._compiled.cache_clear()  # read `VZ_KERNELS` again
    yield
    monkeypatch.delenv("VZ_KERNELS")
    kernels._compiled.cache_clear()
