"""`describe()` stays short: counts by state and the first few problem parts, whatever the store's size."""

from __future__ import annotations

import pytest

zarr = pytest.importorskip("zarr")

import vzcore  # noqa: E402
from tests.harness.synthetic_store import write_random_store  # noqa: E402
from vzcore.store.completion import write_done  # noqa: E402


def test_describe_counts_states_and_lists_only_the_first_problems(tmp_path):
    path = tmp_path / "s.zarr"
    write_random_store(path, 120, num_layers=1, part_size=2, lengths=(3, 4))
    root = zarr.open_group(str(path), mode="a")
    for k in range(3, 60):
        root[f"parts/{k:05d}"].attrs["complete"] = []
    text = vzcore.open_store(path, check_parts=True).describe()  # the parts' own attributes
    lines = text.splitlines()
    assert len(lines) <= 11, text
    assert "done for all methods: 3" in text and "not usable: 57 partly written" in text
    assert "... and 52 more" in lines[-1]
    # What a reader sees by default: the completion index, read without opening a single part.
    every = vzcore.open_store(path).info.mask_of(("value_zeroing", "attention", "attention_norm"))
    write_done(root, [every] * 3 + [0] * 57)
    text = vzcore.open_store(path).describe()
    assert len(text.splitlines()) <= 11, text
    assert "done for all methods: 3" in text and "not usable: 57 not done" in text
