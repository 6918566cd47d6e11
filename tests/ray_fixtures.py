"""Fixtures for the job tests: a tiny saved BERT with the real MiniLM tokenizer, small datasets,
one loopback Ray cluster per test session, and a local S3 server (moto). Import what you use."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

TEXTS = [
    "The cat sat on the mat.",
    "Hello there!",
    "",  # empty: recorded as skipped, never retried
    "A somewhat longer sentence about value zeroing and context mixing in transformers.",
    "Short one.",
    "What is your name?",
    "I like to read books about science and history.",
    "Yes.",
    "Ray actors shard the corpus into parts.",
    "Zarr stores every layer's maps.",
    "Good morning, how are you today?",
    "The end.",
]


def job_config(tmp_path, model: str, data: str, **kw):
    """A small scoring job over `data` with `model`, in this process unless `actors` says otherwise."""
    from jobs.config import JobConfig

    base = dict(
        out=str(tmp_path / "run.zarr"),
        dataset=data,
        model=model,
        methods=("value_zeroing", "attention"),
        limit=8,
        part_size=3,
        batch_size=2,
        actors=0,
        progress=False,
        store_dtype="float32",
    )
    return JobConfig(**{**base, **kw})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A 2-layer seeded BERT saved with the real MiniLM tokenizer: loadable by path in any process."""
    import torch
    import transformers

    from vzcore.loading import resolve_short_name

    tok = transformers.AutoTokenizer.from_pretrained(resolve_short_name("minilm"))
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    path = tmp_path_factory.mktemp("tiny-bert")
    transformers.BertModel(cfg).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def texts_jsonl(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t, "n": k}) + "\n" for k, t in enumerate(TEXTS)))
    return str(path)


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster on loopback for the whole session; the jobs join it."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", _node_ip_address="127.0.0.2", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


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
