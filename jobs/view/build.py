"""Write a static site of a store: the viewer's assets and the same data files the server answers.

The site holds the app, the overview, the examples table of the examples it carries and, for
each of these, its tokens and every map the example page can ask for (each method × token/word ×
layer/rollout × layer, float32). A static file server hosts it anywhere (beside the store, for
sharing) and it reads nothing else. The examples are the first `limit` scored ones, or `ids`:
a static site is a sample to share; the live server (`vz view STORE`) reads any example.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from jobs.view.data import MAX_PAGE, MODES, UNITS, ViewData
from jobs.view.evaluation import read_evaluations
from jobs.view.server import ASSETS

__all__ = ["build_site"]


def build_site(data: ViewData, out: Path, limit: int = 200, ids: Sequence[int] | None = None) -> int:
    """Write the site of `data` into `out` (new or empty); return how many examples it carries."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: a site is written into a new or empty folder")
    shutil.copytree(ASSETS, out / "static", dirs_exist_ok=True)
    shutil.copy(ASSETS / "index.html", out / "index.html")
    limit = len(ids) if ids is not None else limit
    rows: list[dict] = []
    offset = 0
    while len(rows) < limit:
        page = data.examples(offset=offset, limit=MAX_PAGE, ids=ids)
        rows += [r for r in page["rows"] if r["status"] == "scored"]
        offset += MAX_PAGE
        if offset >= page["total"]:
            break
    rows = rows[:limit]
    # A static site answers no corpus question (top-k, concordance, compare): those need the server.
    _write(out / "data/overview.json", data.overview() | {"mode": "static", "compare": None})
    _write(out / "data/evaluations.json", read_evaluations(data))
    _write(out / "data/examples.json", {"total": len(rows), "offset": 0, "rows": rows})
    layers = data.store.layers
    for row in rows:
        eid = int(row["example_id"])
        _write(out / f"data/example/{eid}.json", data.example(eid))
        for method in data.store.methods:
            for unit in UNITS:
                for mode in MODES:
                    folder = out / f"data/maps/{eid}/{method}/{unit}/{mode}"
                    folder.mkdir(parents=True, exist_ok=True)
                    for layer in layers:
                        (folder / f"{layer}.f32").write_bytes(data.maps(eid, method, layer, unit, mode).tobytes())
    return len(rows)


def _write(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, allow_nan=False, default=str))
