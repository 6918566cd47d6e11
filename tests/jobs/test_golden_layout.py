"""A dense store keeps layout v3: the reduced forms (layout v4) must not change it.

`golden_v3.json` holds, for two small random stores (encoder and causal) as the v3 writer wrote them
before the reduced forms existed, the sha256 of every node's metadata and every array's decoded
values, and the names of its chunk files; rewrite it only with a new layout. The chunks' compressed
bytes are not compared: a release of the compressor may encode the same values differently.
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
    """Return `{relative path: sha256}` of every node's `zarr.json` (its JSON, with the array's decoded
    values for an array) and of every other file but chunks, and `{chunk path: "chunk"}` for chunks."""
    import numpy as np
    import zarr

    out = {}
    for f in sorted(path.rglob("*")):
        if not f.is_file():
            continue
        name = str(f.relative_to(path))
        if f.name == "zarr.json":
            meta = json.loads(f.read_text())
            digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
            if meta.get("node_type") == "array":
                values = np.ascontiguousarray(zarr.open_array(str(f.parent), mode="r")[...])
                digest.update(values.dtype.str.encode() + repr(values.shape).encode() + values.tobytes())
            out[name] = digest.hexdigest()
        elif "/c/" in f"/{name}" or name.startswith("c/"):
            out[name] = "chunk"  # its values are in its array's digest
        else:
            out[name] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def golden_stores(tmp: Path) -> dict[str, dict[str, str]]:
    out = {}
    for causal in (False, True):
        path = tmp / f"{'causal' if causal else 'encoder'}.zarr"
        write_random_store(path, 7, num_layers=2, causal=causal, part_size=3, lengths=(3, 9), vocab=40, fail_every=5)
        out[path.name] = digests(path)
    return out


def test_dense_stores_keep_layout_v3(tmp_path):
    assert golden_stores(tmp_path) == json.loads(GOLDEN.read_text())


if __name__ == "__main__":  # regenerate (only for a new layout version)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_text(json.dumps(golden_stores(Path(tmp)), indent=1, sort_keys=True) + "\n")
