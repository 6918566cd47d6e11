"""A dense store keeps layout v3 byte for byte: the reduced forms (layout v4) must not change it.

`golden_v3.json` holds the sha256 of every object of two small random stores (encoder and causal)
as the v3 writer wrote them before the reduced forms existed; rewrite it only with a new layout.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("zarr")

from tests.harness.synthetic_store import write_random_store

GOLDEN = Path(__file__).parent / "data" / "golden_v3.json"


def digests(path: Path) -> dict[str, str]:
    """Return `{relative path: sha256}` of every file under a store."""
    return {
        str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(path.rglob("*"))
        if f.is_file()
    }


def golden_stores(tmp: Path) -> dict[str, dict[str, str]]:
    out = {}
    for causal in (False, True):
        path = tmp / f"{'causal' if causal else 'encoder'}.zarr"
        write_random_store(path, 7, num_layers=2, causal=causal, part_size=3, lengths=(3, 9), vocab=40, fail_every=5)
        out[path.name] = digests(path)
    return out


def test_dense_stores_are_byte_identical_to_layout_v3(tmp_path):
    assert golden_stores(tmp_path) == json.loads(GOLDEN.read_text())


if __name__ == "__main__":  # regenerate (only for a new layout version)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_text(json.dumps(golden_stores(Path(tmp)), indent=1, sort_keys=True) + "\n")
