"""The evaluation page's data: the summaries of `vz evaluate` output folders (jobs/evaluate).

A folder holds `config.json` (its kind, model and methods) and `summary.parquet`: for cue
alignment, the mean cue share per method, layer and phenomenon with its bootstrap interval and the
random baseline (`random`); for blank-out, the mean Spearman correlation per method and layer
(`rollout` rows once, at the last layer). `accuracy.parquet`, when there, is the model's own
agreement accuracy: the bar any method's reading of the model answers to.
"""

from __future__ import annotations

import json
from pathlib import Path

from jobs.view.data import ViewData, ViewError, records

__all__ = ["check_evaluation", "read_evaluation", "read_evaluations"]

FILES = ("config.json", "summary.parquet")


def check_evaluation(path: str) -> str | None:
    """Say what a local folder lacks to be a `vz evaluate` output (None when it is one, or a URL)."""
    if "://" in path:
        return None
    missing = [name for name in FILES if not (Path(path) / name).is_file()]
    return f"{path}: no {' or '.join(missing)} (the output of `vz evaluate`)" if missing else None


def read_evaluation(path: str, storage_options: dict | None = None) -> dict:
    """Return one evaluation folder's kind, model, methods, summary rows and accuracy rows."""
    import fsspec
    import pandas as pd

    base = path.rstrip("/")
    opts = dict(storage_options or {}) if "://" in base else {}
    try:
        with fsspec.open(f"{base}/config.json", "r", **opts) as f:
            config = json.load(f)
        summary = pd.read_parquet(f"{base}/summary.parquet", storage_options=opts or None)
    except (OSError, ValueError) as err:
        raise ViewError(f"{base}: not a readable `vz evaluate` output: {err}", 404) from err
    try:
        accuracy = records(pd.read_parquet(f"{base}/accuracy.parquet", storage_options=opts or None))
    except (OSError, ValueError):  # only cue alignment with a model that has an LM head writes one
        accuracy = []
    return {
        "path": base,
        "kind": config.get("kind"),
        "model": config.get("model"),
        "methods": config.get("methods"),
        "removal": config.get("removal"),
        "summary": records(summary),
        "accuracy": accuracy,
    }


def read_evaluations(data: ViewData) -> dict:
    """The summaries of every evaluation folder the viewer of `data` was given (the page's JSON)."""
    return {"evaluations": [read_evaluation(path, data.store.storage_options) for path in data.evaluations]}
