"""The completion index: opening a store and reading one example touch a bounded number of objects,
whatever the number of parts; the parts stay the truth the index is rebuilt from."""

from __future__ import annotations

import itertools

import pytest

zarr = pytest.importorskip("zarr")

import vzcore  # noqa: E402
from tests.harness.synthetic_store import write_random_store  # noqa: E402
from tests.support import record_reads  # noqa: E402
from vzcore.store.completion import read_done, rebuild_index, write_done  # noqa: E402
from vzcore.store.verify import verify_store  # noqa: E402


@pytest.mark.parametrize("parts", [3, 60])
def test_open_describe_and_one_example_read_a_bounded_set_of_objects(tmp_path, monkeypatch, parts):
    path = tmp_path / "s.zarr"
    write_random_store(path, parts * 2, methods=("attention",), num_layers=1, part_size=2, lengths=(3, 4))
    keys = record_reads(monkeypatch)
    store = vzcore.open_store(path)
    assert "done for all methods: " + str(parts) in store.describe()
    assert sorted(keys) == ["done/c/0", "done/zarr.json", "plan/c/0/0", "plan/zarr.json", "zarr.json"]
    keys.clear()
    store.example(parts)  # in part parts // 2
    part = f"parts/{parts // 2:05d}/"
    assert keys and all(k.startswith(part) for k in keys), keys
    assert len(keys) <= 30


def test_the_index_is_checked_against_the_parts_and_rebuilt_from_them(tmp_path):
    path = tmp_path / "s.zarr"
    write_random_store(path, 8, methods=("attention",), num_layers=1, part_size=2, lengths=(3, 4))
    root = zarr.open_group(str(path), mode="a")
    write_done(root, [1, 0, 1, 1])  # says part 1 is not done: a driver killed before it marked it
    assert vzcore.open_store(path).done_parts() == [0, 2, 3]
    assert vzcore.open_store(path, check_parts=True).done_parts() == [0, 1, 2, 3]  # the parts' own word
    root["parts/00002"].attrs["complete"] = []  # and part 2 is not done, whatever the index says
    problems = verify_store(str(path))
    assert [(b.part, b.index_only) for b in problems] == [(1, True), (2, True)]
    assert "the completion index says done for ['attention'], the part for []" in problems[1].problem
    verify_store(str(path), repair=True)
    assert read_done(root, 4).tolist() == [1, 1, 0, 1] and not verify_store(str(path))
    write_done(root, [0, 0, 0, 0])
    assert rebuild_index(str(path)) == 3 and vzcore.open_store(path).done_parts() == [0, 1, 3]


def test_iterating_a_few_ids_reads_only_the_stretches_that_hold_them(tmp_path, monkeypatch):
    from vzcore.store.reader import PartReader

    path = tmp_path / "s.zarr"
    write_random_store(path, 200, methods=("attention",), num_layers=1, part_size=200, lengths=(8, 12))
    reader = vzcore.open_store(path).part_reader(0)
    spans: list[tuple[int, int]] = []
    real = PartReader._read
    monkeypatch.setattr(
        PartReader, "_read", lambda self, a, b, *args, **kw: spans.append((a, b)) or real(self, a, b, *args, **kw)
    )
    got = [eid for block in reader.iter_results(["attention"], ids={3, 4, 150}, max_values=1000) for eid, _ in block]
    assert got == [3, 4, 150] and spans == [(3, 5), (150, 151)]
    spans.clear()
    assert sum(len(b) for b in reader.iter_results(["attention"], max_values=1000)) == 200  # all, in blocks
    assert spans[0][0] == 0 and spans[-1][1] == 200 and all(a[1] == b[0] for a, b in itertools.pairwise(spans))
