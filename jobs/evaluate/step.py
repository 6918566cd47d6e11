"""The evaluation step: score one chunk of probes' target rows and the model's own predictions, and
write them to the run's folder, on whatever executor runs it. No Ray here.

A unit's output is its store: `units/NNNNN.parquet` (one row per example and method: the target
row at every scored layer, `[layers, n]` flattened) and then `units/NNNNN.json` (the completion
marker: the unit's identity, and per example the model's agreement scores or blank-out changes).
A unit whose marker holds the same identity is done; a rerun skips it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import vzcore
from vzcore.evaluation.predictions import agreement_scores, blank_out
from vzcore.evaluation.probes import Probe

__all__ = ["EvalTask", "Evaluator", "evaluate_chunk", "load_evaluator", "unit_paths"]


@dataclass(frozen=True)
class EvalTask:
    """One chunk of probes to evaluate, and everything the step needs to do it."""

    key: int
    identity: str  # a hash of all that the unit's output depends on
    out: str  # the run's folder, absolute
    kind: str  # "cue-alignment" or "blank-out"
    probes: tuple[Probe, ...]
    methods: tuple[str, ...]
    options: tuple[tuple[str, object], ...] = ()
    removal: str = "mask"  # blank-out only
    output: str = "auto"  # blank-out only


@dataclass
class Evaluator:
    """A worker's replica: the loaded model."""

    handle: object  # a vzcore.ModelHandle


def load_evaluator(model: str, device: str | None = None, num_threads: int | None = None) -> Evaluator:
    """Load the model this worker evaluates with."""
    import torch

    if num_threads:
        torch.set_num_threads(num_threads)
    return Evaluator(vzcore.load_model(model, device=device))


def unit_paths(out: str | Path, key: int) -> tuple[Path, Path]:
    """Return a unit's rows file and its completion marker."""
    base = Path(out) / "units"
    return base / f"{key:05d}.parquet", base / f"{key:05d}.json"


def evaluate_chunk(replica: Evaluator, task: EvalTask, progress: Callable[..., None] | None = None) -> dict:
    """Score the task's target rows with every method, run the model's own measure, write the unit."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    handle = replica.handle
    t0 = time.perf_counter()
    results = vzcore.score(
        handle,
        [list(p.token_ids) for p in task.probes],
        methods=list(task.methods),
        targets=[[p.row] for p in task.probes],
        **dict(task.options),
    )
    records: dict[str, list] = {"example_id": [], "method": [], "layers": [], "n": [], "row": []}
    for probe, res in zip(task.probes, results, strict=True):
        for method in task.methods:
            row = res.scores[method][:, probe.row, :]  # `[layers, n]`
            records["example_id"].append(probe.example_id)
            records["method"].append(method)
            records["layers"].append(list(res.layers))
            records["n"].append(probe.n)
            records["row"].append(row.astype("float32").ravel().tolist())
    model_side: dict[str, dict] = {}
    for probe in task.probes:
        if task.kind == "blank-out":
            positions, change = blank_out(handle, probe, task.removal, task.output)
            model_side[probe.example_id] = {"positions": positions, "change": change.tolist()}
        elif handle.lm is not None:
            good, bad = agreement_scores(handle, probe)
            model_side[probe.example_id] = {"good": _num(good), "bad": _num(bad)}
        if progress:
            progress(1)
    rows_path, marker = unit_paths(task.out, task.key)
    rows_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = rows_path.with_suffix(".parquet.tmp")
    pq.write_table(pa.table(records), tmp)
    os.replace(tmp, rows_path)
    summary = {
        "identity": task.identity,
        "examples": [p.example_id for p in task.probes],
        "has_head": handle.lm is not None,
        "model": model_side,
        "seconds": time.perf_counter() - t0,
        "pid": os.getpid(),
    }
    marker.write_text(json.dumps(summary))  # last: the unit counts as done only now
    return summary


def _num(x: float) -> float | None:
    return None if x != x else x  # JSON has no NaN
