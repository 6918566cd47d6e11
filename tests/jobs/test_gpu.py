"""The job on a CUDA GPU: a real out-of-memory error halves the pair budget, and actors sharing
one GPU (fractions) write the same scores as the CPU. Skipped where torch sees no GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vzcore
from jobs.score import run_job
from jobs.score.step import ScoreSpec, score_examples
from tests.support import TEXTS, job_config
from vzcore.store.location import Location

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

LONG = [" ".join(["value zeroing measures context mixing"] * 10)] * 16  # 16 texts of 62 tokens


def _spec(model: str, memory_budget: int | None) -> ScoreSpec:
    return ScoreSpec(
        model=model,
        methods=("value_zeroing",),
        options=(),
        layers=None,
        max_length=None,
        precision="float32",
        batch_size=len(LONG),
        memory_budget=memory_budget,
        location=Location("unused"),
        store_dtype="float32",
        causal=False,
        num_maps=2,
    )


def test_a_real_cuda_out_of_memory_error_halves_the_budget_until_the_batch_fits(tiny_model_dir):
    handle = vzcore.load_model(tiny_model_dir, device="cuda")
    ids = list(range(len(LONG)))
    want, halvings = score_examples(handle, ids, LONG, ["value_zeroing"], _spec(tiny_model_dir, None))
    assert halvings == 0
    torch.cuda.empty_cache()
    # Cap this process at what it holds now plus 16 MiB: a 64 GiB pair budget asks for one chunk of
    # every pair of the batch at once (~90 MiB), which the caching allocator refuses with a real OOM.
    cap = torch.cuda.memory_reserved() + (16 << 20)
    torch.cuda.set_per_process_memory_fraction(cap / torch.cuda.get_device_properties(0).total_memory)
    try:
        got, halvings = score_examples(handle, ids, LONG, ["value_zeroing"], _spec(tiny_model_dir, 64 << 30))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert halvings > 0
    assert [o.status for o in got] == [o.status for o in want]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a.scores["value_zeroing"], b.scores["value_zeroing"], atol=1e-5)


@pytest.mark.slow
def test_two_actors_on_one_gpu_write_what_the_cpu_computes(ray_cluster, tmp_path, tiny_model_dir, texts_jsonl):
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, limit=len(TEXTS), actors=2, gpus_per_actor=0.5)
    cfg = cfg.replace(device="cuda")
    s = run_job(cfg)
    assert s.exit_code == 0 and (s.scored, s.skipped) == (len(TEXTS) - 1, 1)
    assert s.devices == {"cuda:0"}
    store = vzcore.open_store(cfg.out)
    handle = vzcore.load_model(tiny_model_dir, device="cpu")
    for i, text in enumerate(TEXTS):
        if not text:
            continue
        want = vzcore.score(handle, [text], methods=list(cfg.methods))[0]
        got = store.example(i)
        for m in cfg.methods:
            np.testing.assert_allclose(got.scores[m], want.scores[m], atol=1e-4, err_msg=f"{m}, example {i}")
