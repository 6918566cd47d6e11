"""How much of the cluster each actor asks for, and how many actors fit (no Ray needed)."""

from __future__ import annotations

import pytest

from cluster.placement import ActorShape, actor_shape, actors_that_fit, check_request, default_actors


def shape(resources, device="auto", actors=1, gpus=1.0, cpus=None):
    return actor_shape(resources, device=device, actors=actors, gpus_per_actor=gpus, cpus_per_actor=cpus)


def test_auto_uses_gpus_when_the_cluster_has_some():
    assert shape({"CPU": 16, "GPU": 2}, actors=2) == ActorShape(cpus=1.0, gpus=1.0, device="cuda", threads=None)
    assert shape({"CPU": 16, "GPU": 2}, gpus=0.5, cpus=4) == ActorShape(4.0, 0.5, "cuda", None)


def test_cpu_actors_share_the_cpus_as_torch_threads():
    assert shape({"CPU": 8}, actors=3) == ActorShape(cpus=2.0, gpus=0.0, device="cpu", threads=2)
    assert shape({"CPU": 2}, actors=4) == ActorShape(1.0, 0.0, "cpu", 1)  # at least one thread each
    assert shape({"CPU": 16, "GPU": 1}, device="cpu", actors=2).device == "cpu"  # GPUs left alone
    assert shape({"CPU": 8}, cpus=3).threads == 3


def test_cuda_is_asked_for_even_before_gpu_nodes_are_up():
    s = shape({"CPU": 2}, device="cuda")  # an autoscaling cluster whose GPU workers are not up yet
    assert (s.device, s.gpus) == ("cuda", 1.0)
    assert actors_that_fit({"CPU": 2}, s) == 0


@pytest.mark.parametrize(
    ("resources", "gpus", "cpus", "fit"),
    [
        ({"CPU": 16, "GPU": 1}, 1.0, None, 1),
        ({"CPU": 16, "GPU": 1}, 0.5, None, 2),
        ({"CPU": 16, "GPU": 1}, 1 / 3, None, 3),
        ({"CPU": 256, "GPU": 7}, 0.07, None, 100),  # 7 / 0.07 is 99.99999999999999 in floats
        ({"CPU": 3, "GPU": 4}, 1.0, 2, 1),  # CPUs bind first
    ],
)
def test_actors_that_fit(resources, gpus, cpus, fit):
    assert actors_that_fit(resources, shape(resources, gpus=gpus, cpus=cpus)) == fit


def test_cpu_actors_that_fit():
    assert actors_that_fit({"CPU": 2}, shape({"CPU": 2}, actors=3)) == 2


@pytest.mark.parametrize(
    ("device", "gpus", "cpus", "message"),
    [
        ("tpu", 1.0, None, "--device"),
        ("cuda", 0.0, None, "--gpus-per-actor"),
        ("auto", 1e-5, None, "--gpus-per-actor"),  # below Ray's resolution
        ("auto", 1.5, None, "--gpus-per-actor"),  # Ray places fractions of one GPU, or whole GPUs
        ("cpu", 1.0, 0, "--cpus-per-actor"),
    ],
)
def test_bad_requests_are_refused(device, gpus, cpus, message):
    with pytest.raises(ValueError, match=message):
        check_request(device, gpus, cpus)
    with pytest.raises(ValueError, match=message):
        shape({"CPU": 2, "GPU": 1}, device=device, gpus=gpus, cpus=cpus)


def test_whole_gpus_are_a_valid_request():
    check_request("cuda", 2.0, 4)
    assert shape({"CPU": 8, "GPU": 4}, gpus=2.0).gpus == 2.0


def test_by_default_a_cpu_cluster_gets_one_single_threaded_actor_per_core():
    one = shape({"CPU": 8}, actors=None)
    assert one == ActorShape(cpus=1.0, gpus=0.0, device="cpu", threads=1) and default_actors({"CPU": 8}, one) == 8
    two = shape({"CPU": 8}, actors=None, cpus=2)  # --cpus-per-actor 2: half as many actors, 2 threads each
    assert (two.threads, default_actors({"CPU": 8}, two)) == (2, 4)
    assert default_actors({"CPU": 7}, two) == 3 and default_actors({"CPU": 1}, two) == 1  # never none
    gpu = shape({"CPU": 16, "GPU": 2}, actors=None)
    assert (gpu.device, default_actors({"CPU": 16, "GPU": 2}, gpu)) == ("cuda", 1)  # GPUs: one actor


def test_default_cpu_actors_are_as_many_as_the_memory_holds_copies_of_the_model():
    one = actor_shape({"CPU": 16}, device="cpu", actors=None, gpus_per_actor=1.0, cpus_per_actor=None)
    gib = 1 << 30
    assert default_actors({"CPU": 16, "memory": 64 * gib}, one, replica_bytes=7 * gib) == 9  # not 16 copies
    assert default_actors({"CPU": 16, "memory": 64 * gib}, one, replica_bytes=gib) == 16  # the cores bound it
    assert default_actors({"CPU": 16, "memory": 4 * gib}, one, replica_bytes=7 * gib) == 1  # never none
    assert default_actors({"CPU": 16}, one, replica_bytes=7 * gib) == 16  # a cluster that reports no memory


def test_a_replicas_memory_counts_the_weights_of_its_shape():
    from jobs.score.plan import RUNTIME_BYTES, replica_bytes
    from vzcore.families.spec import Geometry

    minilm = Geometry(num_layers=6, hidden=384, heads=12, kv_heads=12, head_dim=32, ffn=1536)
    weights = 6 * (4 * 384 * 384 + 2 * 384 * 1536) + 30522 * 384  # q, k, v, o; up and down; embeddings
    # the estimate counts a gated feed-forward (3 × d × d_ff): it errs by one projection on ungated ones
    assert 4 * weights <= replica_bytes(minilm, 30522) - RUNTIME_BYTES <= 4 * (weights + 6 * 384 * 1536)
