"""The encoder–decoder scoring step: score one part of (source, target) pairs at every site and write it.

A worker loads the model once (`load_pair_scorer`) and runs `score_pair_part` on each part it is
given, like `jobs.score.step` for single-stack models. Audio is read, checked and resampled here,
on the worker (`vzcore.audio`): an unreadable file, empty audio, a rate that cannot be resampled or
audio longer than the model's window fails that example with one line (the part's `failures`, the
examples table's `reason`), and the part goes on. No Ray here.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.executor import Deferred
from jobs.score.step import HalvingBudget, PartReport, PartTask, stored_part
from vzcore.api import default_memory_budget
from vzcore.audio import AudioError, as_audio, decode_audio, model_rate, read_audio, window_seconds
from vzcore.inputs import text_problem
from vzcore.seq2seq import load_seq2seq, score_pairs
from vzcore.store.location import Location
from vzcore.store.pairwriter import PairOutcome, write_pair_part
from vzcore.store.sites import SiteLayout

__all__ = ["PairScorer", "PairSpec", "load_pair_scorer", "score_pair_examples", "score_pair_part"]


@dataclass(frozen=True)
class PairSpec:
    """What an encoder–decoder replica needs to score and write parts (sent once to each worker)."""

    model: str
    methods: tuple[str, ...]
    distance: str
    sites: tuple[SiteLayout, ...]
    max_new_tokens: int
    location: Location
    store_dtype: str
    audio: bool
    num_threads: int | None = None
    device: str | None = None
    special_ids: tuple[int, ...] = ()
    memory_budget: int | None = None  # bytes per chunk of pairs (None: the device's default); halved on OOM
    audio_base: str | None = None  # where relative audio file names point from (the data file's folder)


@dataclass
class PairScorer:
    handle: Any  # a vzcore.seq2seq.Seq2SeqHandle
    spec: PairSpec


def load_pair_scorer(spec: PairSpec) -> PairScorer:
    """Load the encoder–decoder replica this worker scores with."""
    import torch

    if spec.num_threads:
        torch.set_num_threads(spec.num_threads)
    return PairScorer(load_seq2seq(spec.model, device=spec.device), spec)


def _waveform(source: Any, config: Any, base: str | None = None) -> tuple[Any, int]:
    """Read an audio row (`{"path", "bytes"}`, see `jobs.score.pairdata`; a relative path from `base`), check
    it and resample it to the model's rate; an `AudioError` says what is wrong with it."""
    if not isinstance(source, dict) or not (source.get("bytes") or source.get("path")):
        raise AudioError(f"no audio in this row ({type(source).__name__})")
    where = str(source.get("path") or "audio bytes")
    if source.get("bytes"):
        audio = decode_audio(source["bytes"], where)
    else:
        path = Path(source["path"]).expanduser()
        # named as the data names it: the failure table holds no path of the machine that read it
        audio = read_audio(path if path.is_absolute() or base is None else Path(base) / path, where)
    rate = model_rate(config)
    checked = as_audio(audio, rate, window_seconds(config))
    return checked.samples, checked.rate


def _source_problem(source: Any, audio: bool) -> tuple[str, bool] | None:
    """Why a row's source cannot be scored, and whether that is a skip (nothing to score) rather than a failure."""
    if audio:
        return None  # read and checked when scored: its error is the reason
    if source is not None and not isinstance(source, str):
        return f"source is {type(source).__name__}, not a string", False
    problem = text_problem(source)
    return (problem, True) if problem is not None else None


def score_pair_examples(
    handle: Any,
    ids: Sequence[int],
    rows: Sequence[dict],
    methods: Sequence[str],
    spec: PairSpec,
    progress: Callable[[int, int], None] | None = None,
) -> list[PairOutcome]:
    """Score each row (a pair at a time) at the spec's sites; return one outcome per row, in id order.

    A row whose source is missing or blank is skipped, one whose audio cannot be used or whose
    scoring raises fails with the reason; the others are scored. On an out-of-memory error the pair
    budget is halved and the pair retried (down to `MIN_MEMORY_BUDGET`), as single-stack parts do."""
    layers = {s.name: list(s.layers) for s in spec.sites}
    budget = HalvingBudget(spec.memory_budget or default_memory_budget(handle.device))
    out = []
    for i, row in zip(ids, rows, strict=True):
        source, target = row.get("source"), row.get("target")
        problem = _source_problem(source, spec.audio)
        if problem is not None:
            out.append(PairOutcome.failed(i, problem[0], skipped=problem[1]))
            if progress:
                progress(1, 0)
            continue
        if isinstance(target, str) and not target.strip():
            target = None  # a blank target: the model's own output, as for a missing one
        try:
            rate = None
            if spec.audio:
                source, rate = _waveform(source, handle.config, spec.audio_base)
            result = budget.run(
                functools.partial(
                    score_pairs,
                    handle,
                    [source],
                    [target],
                    methods=list(methods),
                    sites=list(layers),
                    layers=layers,
                    sampling_rate=rate,
                    max_new_tokens=spec.max_new_tokens,
                    distance=spec.distance,
                    frames="audio",  # the frames holding the utterance, not Whisper's padded 30 s window
                )
            )[0]
            outcome = PairOutcome.from_result(i, result)
        except Exception as err:  # bad audio, or a pair the model cannot take: this example only
            outcome = PairOutcome.failed(i, f"{type(err).__name__}: {err}"[:500])
        out.append(outcome)
        if progress:
            progress(1, outcome.n_source + outcome.n_target)
    return out


def score_pair_part(scorer: PairScorer, task: PartTask, progress: Callable[[int, int], None] | None = None) -> Deferred:
    """Score `task`'s pairs; return the part's write, whose `finish()` returns its `PartReport`."""
    t0 = time.perf_counter()
    ids = list(range(task.start, task.stop))
    outcomes = score_pair_examples(scorer.handle, ids, list(task.texts), task.methods, scorer.spec, progress)
    scored = time.perf_counter() - t0
    device = str(scorer.handle.device)
    return Deferred(functools.partial(_write, scorer.spec, task, outcomes, scored, device))


def _write(spec: PairSpec, task: PartTask, outcomes: list[PairOutcome], scored: float, device: str) -> PartReport:
    t1 = time.perf_counter()
    stored = stored_part(
        spec.location,
        task.part,
        lambda: write_pair_part(
            spec.location,
            task.part,
            outcomes,
            list(task.methods),
            sites=spec.sites,
            start=task.start,
            stop=task.stop,
            store_dtype=spec.store_dtype,
            rows=task.texts,
            special_ids=spec.special_ids,
        ),
    )
    t2 = time.perf_counter()
    return PartReport.of_write(
        task.part,
        outcomes,
        tokens=sum(o.n_source + o.n_target for o in outcomes),
        scored=scored,
        written=t2 - t1,
        stored=stored,
        device=device,
    )
