"""The scoring step: score one part and write it, on whatever executor runs it. No Ray here.

A worker builds a `Scorer` once (`load_scorer`: the model replica and what to do with it) and then
runs `score_part` on each part it is given; `cluster` executors call both without knowing what
they do. `score_part` scores on the device and returns the part's write as a `Deferred`: the
executor writes it behind the next part's scoring, so a GPU never waits for the store.
"""

from __future__ import annotations

import errno
import functools
import os
import resource
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

import vzcore
from cluster.executor import Deferred, StopRun
from jobs.score.targets import TargetSpec, target_rows
from vzcore.allocator import bound_freed_memory
from vzcore.api import default_memory_budget
from vzcore.inputs import TruncationWarning, UnscorableTextError, encode, text_problem
from vzcore.store.forms import StoreForm
from vzcore.store.layout import STATUS_FAILED, STATUS_SCORED, STATUS_SKIPPED, part_path
from vzcore.store.location import Location
from vzcore.store.writer import ExampleOutcome, Written, write_part

__all__ = [
    "MIN_MEMORY_BUDGET",
    "PartReport",
    "PartTask",
    "ScoreSpec",
    "Scorer",
    "empty_cache",
    "is_oom",
    "load_scorer",
    "score_examples",
    "score_part",
    "stored_part",
]

# Storage faults that retrying cannot fix, with what the user must do: they stop the job at once.
STORAGE_FAULTS = {
    errno.ENOSPC: "free space there",
    errno.EDQUOT: "free space within your quota there",
    errno.EACCES: "make it writable",
    errno.EPERM: "make it writable",
    errno.EROFS: "it is read-only: choose a writable --out",
}
MIN_MEMORY_BUDGET = 1 << 20  # below this, an example that still runs out of memory is given up
FULL_TRIM_SECONDS = 30.0  # at most one full trim of freed memory per this much work (see vzcore.allocator)


@dataclass(frozen=True)
class ScoreSpec:
    """What a model replica needs to score and write parts (sent once to each worker)."""

    model: str
    methods: tuple[str, ...]  # every method of the run (a task may ask for a subset)
    options: tuple[tuple[str, object], ...]
    layers: tuple[int, ...] | None
    max_length: int | None
    precision: str
    batch_size: int
    memory_budget: int | None  # None: vzcore's default for the device
    location: Location  # the store
    store_dtype: str
    causal: bool
    num_maps: int  # maps per example: one per stored layer
    num_threads: int | None = None
    device: str | None = None
    special_ids: tuple[int, ...] = ()  # the tokenizer's special tokens (the tokens table's `is_special`)
    form: StoreForm = field(default_factory=StoreForm)  # how maps are stored (`--store`)
    targets: TargetSpec = field(default_factory=TargetSpec)  # which rows are scored and stored (`--targets`)
    mask_id: int | None = None  # the tokenizer's mask token (`--targets mask`)


@dataclass(frozen=True)
class PartTask:
    """One part to score: its plan range, the methods still missing, and its texts in id order
    (filled by the driver just before the part goes to a worker: `Executor.run(prepare=...)`)."""

    part: int
    start: int
    stop: int
    methods: tuple[str, ...]
    texts: tuple[object, ...] = ()
    positions: tuple[object, ...] = ()  # `--targets column=NAME`: each row's positions (empty otherwise)


@dataclass
class PartReport:
    """What scoring one part did."""

    part: int
    examples: int = 0
    tokens: int = 0
    scored: int = 0
    failed: int = 0
    skipped: int = 0
    truncated: int = 0
    failures: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0  # scoring and writing it (not the wait for the writer, nor for the device)
    pid: int = 0
    peak_rss_mib: float = 0.0  # the worker process's peak resident memory so far
    write_seconds: float = 0.0  # of `seconds`, the time spent writing the part
    device: str = ""  # where the replica scored, e.g. "cuda:0"
    oom_halvings: int = 0  # times an out-of-memory error halved the pair budget
    bytes: int = 0  # the part's size in the store, once written
    # The methods the part holds complete once written: the run's, and those it held before unless its
    # examples changed since (then it was rewritten with this run's methods alone).
    complete: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()  # methods it held before and lost so (see `Written`)

    @classmethod
    def of_write(
        cls,
        part: int,
        outcomes: list,
        *,
        tokens: int,
        scored: float,
        written: float,
        stored: tuple[int, Written],
        **more,
    ) -> PartReport:
        """The report of a part whose `outcomes` (each with `status`, `example_id`, `reason`) took `scored`
        seconds to score and `written` to write, holding `tokens` positions and `stored` (`stored_part`)."""
        size, held = stored
        return cls(
            part=part,
            examples=len(outcomes),
            tokens=tokens,
            scored=sum(o.status == STATUS_SCORED for o in outcomes),
            failed=sum(o.status == STATUS_FAILED for o in outcomes),
            skipped=sum(o.status == STATUS_SKIPPED for o in outcomes),
            failures={o.example_id: o.reason for o in outcomes if o.status == STATUS_FAILED},
            seconds=scored + written,
            write_seconds=written,
            pid=os.getpid(),
            bytes=size,
            complete=tuple(held.complete),
            dropped=tuple(held.dropped),
            peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
            **more,
        )


@dataclass
class Scorer:
    """A worker's replica: the loaded model and the spec it scores parts with."""

    handle: object  # a vzcore.ModelHandle
    spec: ScoreSpec


def load_scorer(spec: ScoreSpec) -> Scorer:
    """Load the model replica this worker scores with (the worker's process is the job's own)."""
    import torch

    if spec.num_threads:
        torch.set_num_threads(spec.num_threads)
    handle = vzcore.load_model(spec.model, device=spec.device)
    if handle.device.type == "cpu":
        vzcore.keep_freed_memory()  # the worker owns its process: keep freed blocks for reuse
    return Scorer(handle, spec)


def is_oom(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


T = TypeVar("T")


@dataclass
class HalvingBudget:
    """A part's pair-chunk budget in bytes: halved on each out-of-memory error and the work retried, down
    to `MIN_MEMORY_BUDGET` (then the error stands). Both job kinds' steps score through it."""

    bytes: int
    halvings: int = 0

    def run(self, score: Callable[..., T]) -> T:
        """Return `score(memory_budget=budget)`, retried with half the budget after each out-of-memory error."""
        while True:
            try:
                return score(memory_budget=self.bytes)
            except Exception as err:
                if not is_oom(err) or self.bytes <= MIN_MEMORY_BUDGET:
                    raise
                self.bytes //= 2
                self.halvings += 1
                empty_cache()


def score_examples(
    handle,
    ids: Sequence[int],
    texts: Sequence[object],
    methods: Sequence[str],
    spec: ScoreSpec,
    progress: Callable[[int, int], None] | None = None,
    positions: Sequence[object] = (),
) -> tuple[list, int]:
    """Score `texts` (ids `ids`) batched by length; return one `ExampleOutcome` per example, in id
    order, and how many times an out-of-memory error halved the pair budget.

    Texts with nothing to score (missing: null or blank; only invisible characters; no token
    besides the special ones) are skipped with the reason; an example that raises is recorded as
    failed with the reason. On an out-of-memory error the pair-chunk budget is halved and the batch
    retried, then each example alone, before an example is given up. `progress(examples, tokens)`
    is called after each batch. The library's truncation warning is left out: `score_part` says
    which examples were cut. `positions` are the rows' `--targets column=NAME` values, in `ids` order.
    """
    given = dict(zip(ids, positions, strict=True)) if positions else {}

    outcomes: dict[int, ExampleOutcome] = {}
    todo = []
    for i, t in zip(ids, texts, strict=True):
        if t is not None and not isinstance(t, str):
            outcomes[i] = ExampleOutcome.failed(i, f"text is {type(t).__name__}, not a string")
        elif (problem := text_problem(t)) is not None:
            outcomes[i] = ExampleOutcome.failed(i, problem, skipped=True)
        else:
            todo.append((i, t))
    if progress and outcomes:
        progress(len(outcomes), 0)
    todo.sort(key=lambda it: len(it[1]))  # length batching: few pad tokens per batch
    options = dict(spec.options)
    budget = HalvingBudget(spec.memory_budget or default_memory_budget(handle.device))

    def run(batch):
        """Return `(item, result)` of each example of `batch` that has something to score."""
        while batch:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", TruncationWarning)
                    targets = None
                    if not spec.targets.all_rows:  # tokenised once more here: only the chosen rows are scored
                        rows = _targets(handle, batch, spec, given)
                        for k in [k for k, r in enumerate(rows) if not isinstance(r, list) or not r]:
                            why = rows[k] if isinstance(rows[k], str) else f"no target row (--targets {spec.targets})"
                            outcomes[batch[k][0]] = ExampleOutcome.failed(batch[k][0], why, skipped=True)
                        batch = [item for item, r in zip(batch, rows, strict=True) if isinstance(r, list) and r]
                        targets = [r for r in rows if isinstance(r, list) and r]
                        if not batch:
                            return []
                    results = budget.run(
                        functools.partial(
                            vzcore.score,
                            handle,
                            [t for _, t in batch],
                            methods=list(methods),
                            layers=spec.layers,
                            max_length=spec.max_length,
                            batch_size=len(batch),
                            precision=spec.precision,
                            targets=targets,
                            **options,
                        )
                    )
                return list(zip(batch, results, strict=True))
            except UnscorableTextError as err:  # found while tokenising: skip those, score the rest
                for k, reason in err.reasons.items():
                    outcomes[batch[k][0]] = ExampleOutcome.failed(batch[k][0], reason, skipped=True)
                batch = [item for k, item in enumerate(batch) if k not in err.reasons]
        return []

    for b in range(0, len(todo), spec.batch_size):
        batch = todo[b : b + spec.batch_size]
        try:
            results = run(batch)
        except Exception:
            results = []
            for item in batch:  # find which example fails and why; the others still count
                try:
                    results.extend(run([item]))
                except Exception as err:
                    reason = f"{type(err).__name__}: {err}"[:500]
                    outcomes[item[0]] = ExampleOutcome.failed(item[0], reason)
        for (i, _), res in results:
            outcomes[i] = _outcome(i, res, spec)
        if progress:
            progress(len(batch), sum(len(r.token_ids) for _, r in results))
        results = res = None  # free this batch's float32 maps before trimming
        bound_freed_memory()  # or a worker's memory creeps up with the corpus (see vzcore.allocator)
    return [outcomes[i] for i in sorted(outcomes)], budget.halvings


def _outcome(i: int, res, spec: ScoreSpec) -> ExampleOutcome:
    """Return what the part stores of one scored example: its maps (its held rows), or its word maps
    (`--store words`: `ScoreResult.word_level()`, pooled here so a part holds its words, not its tokens)."""
    if spec.form.words:
        try:
            return ExampleOutcome.from_words(i, res, targeted=not spec.targets.all_rows)
        except ValueError as err:  # a causal example whose words are not runs of tokens
            return ExampleOutcome.failed(i, str(err))
    held = None if spec.targets.all_rows else np.flatnonzero(res.scored_rows).tolist()
    return ExampleOutcome.from_result(i, res, rows=held)


def _targets(handle, batch, spec: ScoreSpec, given: dict) -> list[list[int] | str]:
    """Return each text's target rows (`jobs.score.targets`) from its tokens as the model sees them,
    or why it has none."""
    encoded = encode(handle, [t for _, t in batch], spec.max_length)
    out: list[list[int] | str] = []
    for (i, _), e in zip(batch, encoded, strict=True):
        try:
            out.append(target_rows(spec.targets, e.token_ids, spec.special_ids, spec.mask_id, given.get(i)))
        except ValueError as err:
            out.append(str(err))
    return out


def empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def score_part(scorer: Scorer, task: PartTask, progress: Callable[[int, int], None] | None = None) -> Deferred:
    """Score `task`'s examples; return the part's write (arrays, then the methods marked complete),
    whose `finish()` returns the part's `PartReport`."""

    handle, spec = scorer.handle, scorer.spec
    t0 = time.perf_counter()
    ids = list(range(task.start, task.stop))
    outcomes, halvings = score_examples(handle, ids, task.texts, task.methods, spec, progress, task.positions)
    cut = [o.example_id for o in outcomes if o.truncated]
    if cut:  # said here, not in the write: warnings belong to the thread that scored
        shown = ", ".join(map(str, cut[:5])) + (", ..." if len(cut) > 5 else "")
        limit = f"{spec.max_length} tokens" if spec.max_length else "the model's token limit"
        said = f"part {task.part}: {len(cut)} example(s) longer than {limit} were truncated to it: {shown}"
        warnings.warn(said, stacklevel=1)  # about the data, not about a caller's line
    scored = time.perf_counter() - t0
    return Deferred(functools.partial(_write, spec, task, outcomes, halvings, scored, str(handle.device)))


def stored_part(location: Location, part: int, write: Callable[[], Written]) -> tuple[int, Written]:
    """Run `write` (one part's write) and return the part's bytes in the store and what it holds. A
    storage fault that a retry cannot mend (a full disk, no permission) stops the run saying what to
    do; others propagate, and the executor retries the part."""
    try:
        written = write()
    except OSError as err:
        if err.errno not in STORAGE_FAULTS:
            raise  # transient (a dropped connection): the executor retries the part
        raise StopRun(
            f"cannot write part {part} to the store {location.path}: {err.strerror or err} — "
            f"{STORAGE_FAULTS[err.errno]}, then rerun the same command to resume"
        ) from err
    fs, path = location.filesystem(part_path(part))
    return int(fs.du(path, total=True)), written


def _write(spec: ScoreSpec, task: PartTask, outcomes: list, halvings: int, scored: float, device: str) -> PartReport:
    """Write a scored part and return its report (run by the executor, possibly on a writer thread)."""
    t1 = time.perf_counter()
    stored = stored_part(
        spec.location,
        task.part,
        lambda: write_part(
            spec.location,
            task.part,
            outcomes,
            list(task.methods),
            causal=spec.causal,
            num_maps=spec.num_maps,
            start=task.start,
            stop=task.stop,
            store_dtype=spec.store_dtype,
            texts=task.texts,
            special_ids=spec.special_ids,
            form=spec.form,
            targeted=not spec.targets.all_rows,
        ),
    )
    t2 = time.perf_counter()
    # Handing back all that was freed keeps the heap from fragmenting pass after pass (an actor's
    # peak then stops rising over a long corpus); paced, since refilling the heap costs time.
    bound_freed_memory(limit=0, every=FULL_TRIM_SECONDS)
    return PartReport.of_write(
        task.part,
        outcomes,
        tokens=sum(o.n for o in outcomes),
        scored=scored,
        written=t2 - t1,
        stored=stored,
        truncated=sum(bool(o.truncated) for o in outcomes),
        device=device,
        oom_halvings=halvings,
    )
