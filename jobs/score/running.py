"""What every scoring run shares, whatever it scores: the stored root read back, what a plan still lacks,
the parts run through an executor with a progress bar, and the ways a run ends early.

`jobs.score.driver` (single-stack models) and `jobs.score.pairjob` (encoder–decoders) both run through here.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Callable

from cluster.connect import interrupting_signal
from cluster.executor import Event, Executor, Progress, Ready, ReplicaError, RunStopped, Started, Unit, Waiting
from jobs.score.config import JobConfig
from jobs.score.step import PartReport, PartTask
from jobs.score.validate import JobError
from vzcore.store.completion import mark_done, read_parts, remaining
from vzcore.store.layout import LAYOUT_VERSION, REDUCED_LAYOUT, SITES_LAYOUT, texts_fingerprint
from vzcore.store.root import read_plan

__all__ = [
    "WRITTEN_LAYOUTS",
    "JobInterrupted",
    "JobStopped",
    "ModelLoadError",
    "marker",
    "missing_parts",
    "score_parts",
    "store_bytes",
    "stored_attrs",
]

# The layouts this version writes (dense of every row: v3; reduced forms: v4; encoder-decoder sites: v5),
# so the ones a run extends.
WRITTEN_LAYOUTS = (LAYOUT_VERSION, REDUCED_LAYOUT, SITES_LAYOUT)


class ModelLoadError(RuntimeError):
    """A worker could not load the model (its config and tokenizer read fine): the job stops, exit 1."""


class JobStopped(RuntimeError):
    """A fault no retry fixes (a full disk) stopped the job; the store stays resumable."""


class JobInterrupted(Exception):
    """The driver was interrupted (Ctrl-C, or SIGTERM from a batch scheduler): every worker stopped,
    the store stays resumable. The exit code is the shell's for that signal (130, 143)."""

    def __init__(self, done: int, planned: int, signum: int = signal.SIGINT) -> None:
        how = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        super().__init__(f"{how}: {done} of {planned} parts done; rerun the same command to resume")
        self.done, self.planned, self.exit_code = done, planned, 128 + signum


def stored_attrs(cfg: JobConfig) -> dict:
    """Return the root attributes of the store at `--out` ({} when there is none yet), reading only."""

    fs, path = cfg.location.filesystem("zarr.json")
    try:
        if not fs.exists(path):
            return {}
        root = cfg.location.open_group(mode="r")
        attrs = dict(root.attrs)
        if attrs.get("vz_layout") in WRITTEN_LAYOUTS:
            attrs["plan"] = read_plan(root)
    except Exception as err:
        why = cfg.location.access_problem(err) or f"{type(err).__name__}: {err}"
        raise JobError(f"cannot open store {cfg.out}: {why}") from None
    if attrs.get("vz_layout", LAYOUT_VERSION) not in WRITTEN_LAYOUTS:
        raise JobError(
            f"{cfg.out} has store layout v{attrs['vz_layout']}, written by an older vzcore: it still reads"
            " (vzcore.open_store), but a run cannot extend it; pass --overwrite to rescore it, or choose another --out"
        )
    return attrs


def marker(root, attrs) -> Callable[[int, tuple[str, ...]], None]:
    """Return what records in the completion index the methods a written part holds complete (exactly:
    a part rewritten because its examples changed holds the run's methods alone)."""

    def mark(part: int, methods: tuple[str, ...]) -> None:
        mark_done(root, part, attrs.mask_of(methods), exact=True)

    return mark


def missing_parts(cfg: JobConfig, stored: bool, plan: list[dict], source) -> tuple[list[PartTask], list[tuple]]:
    """Return a task per part of `plan` that lacks some of the run's methods, and each part's complete
    methods (reading the store only: one read per part, and the rows of each part already written)."""

    parts = read_parts(cfg.location.open_group(mode="r") if stored else None, plan)
    changed = [p for p in parts if p.data_hash and p.data_hash != texts_fingerprint(source.rows(p.start, p.stop))]
    if changed:
        first = changed[0]
        raise JobError(
            f"{len(changed)} of the store's parts were scored from other rows than the dataset holds now "
            f"(first: part {first.part}, rows [{first.start}, {first.stop})): the data changed or its "
            "rows moved; pass --overwrite to replace the store, or choose another --out"
        )
    tasks = [PartTask(p.part, p.start, p.stop, missing) for p, missing in remaining(parts, cfg.methods)]
    return tasks, [p.usable for p in parts]


def score_parts(
    cfg: JobConfig, executor: Executor, tasks: list[PartTask], source, summary, on_event, mark, *, step, replica
):
    """Run `tasks` through `executor`: `replica()` loads each worker's model, `step(replica, task, progress)`
    scores a part and returns its write (`jobs.score.step.score_part`, `jobs.score.pairstep.score_pair_part`);
    a progress bar, the summary counted from the parts' reports, each written part marked in the index."""
    from tqdm.auto import tqdm

    # The bar's rates are averages from the first ready worker (smoothing=0 and a reset then), the
    # same span as the summary's throughput: the cluster's start-up is not in them.
    total = sum(t.stop - t.start for t in tasks)
    bar = tqdm(total=total, unit="ex", disable=not cfg.progress, desc="scoring", dynamic_ncols=True, smoothing=0)
    tokens = [0]
    t0 = time.perf_counter()
    counted: dict[int, int] = {}  # examples the bar counted per part, taken back when a part is retried

    def event(ev: Event) -> None:
        nonlocal t0
        if isinstance(ev, Ready) and not counted and not tokens[0]:
            t0 = time.perf_counter()
            bar.reset(total=total)
        elif isinstance(ev, Started) and counted.get(ev.key):
            bar.update(-counted.pop(ev.key))  # a retried part counts once: the bar never passes the plan
        elif isinstance(ev, Progress):
            examples, tok = ev.counts
            counted[ev.key] = counted.get(ev.key, 0) + examples
            tokens[0] += tok
            bar.update(examples)
            bar.set_postfix(tok_s=f"{tokens[0] / max(time.perf_counter() - t0, 1e-9):.0f}", failed=summary.failed)
        elif isinstance(ev, Waiting):
            bar.write(
                f"no actor ready yet: {ev.workers} loading the model or waiting for cluster resources "
                f"({ev.cpus:g} CPU, {ev.gpus:g} GPU each)"
            )
        if on_event:
            on_event(ev)

    parts_done: list[int] = []

    def result(unit: Unit, report: PartReport) -> None:
        mark(unit.key, report.complete)  # the part marked itself complete: now the index says so, exactly
        if report.dropped:  # its examples changed since those were scored: rewritten without them
            summary.dropped[unit.key] = list(report.dropped)
        parts_done.append(unit.key)
        summary.add(report)

    def with_texts(task: PartTask) -> PartTask:  # read just before a part goes out: only parts in flight
        texts = tuple(source.rows(task.start, task.stop))
        positions = tuple(source.positions(task.start, task.stop)) if source.positions_column else ()
        return dataclasses.replace(task, texts=texts, positions=positions)

    units = [Unit(t.part, t) for t in tasks]
    try:
        run = executor.run(
            units,
            step,
            replica=replica,
            on_result=result,
            on_event=event,
            prepare=with_texts,
        )
    except ReplicaError as err:
        raise ModelLoadError(f"a worker could not load the model {cfg.model!r}: {err}") from err
    except RunStopped as err:
        raise JobStopped(str(err)) from err
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (`cluster.connect.Terminated`)
        done = summary.planned_parts - len(tasks) + len(parts_done)
        raise JobInterrupted(done, summary.planned_parts, interrupting_signal(err)) from None
    finally:
        bar.close()
    summary.startup_seconds = run.startup_seconds
    summary.scoring_seconds = time.perf_counter() - t0  # t0: when the first worker was ready
    summary.lost_parts = run.lost
    summary.actor_deaths = run.deaths


def store_bytes(cfg: JobConfig) -> int:
    fs, path = cfg.location.filesystem()
    try:
        return int(fs.du(path, total=True))
    except FileNotFoundError:
        return 0
