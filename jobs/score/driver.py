"""The corpus scoring job: plan parts, score them through an executor, write a Zarr store, summarise.

    python -m jobs.score --out runs/chatterbot.zarr                 # MiniLM on 200 chatterbot lines
    python -m jobs.score --out runs/c.zarr --methods value_zeroing,attention,attention_norm --limit 1000 --actors 2
    python -m jobs.score --dataset corpus.jsonl --text-column body --model smollm2 --layers 0,15,29 \\
        --out s3://bucket/run.zarr --storage-option endpoint_url=http://127.0.0.1:5000 --dry-run
    vz score --out runs/chatterbot.zarr                             # the same through the `vz` command

Rerunning a command finishes what is missing (and does nothing on a finished store); a larger
`--limit` or another method scores only what is new. `--actors 0` scores in this process; otherwise
the parts run on Ray actors (`cluster.where` chooses and places them): one code path, two executors.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np

from cluster.connect import interrupt_on_sigterm
from cluster.credentials import public_options
from cluster.executor import Event
from cluster.where import Placement, open_executor
from jobs.score.config import JobConfig
from jobs.score.data import DatasetError, open_texts
from jobs.score.identity import check_identity, identities, versions
from jobs.score.lease import hold_lease
from jobs.score.pairjob import is_pair_job, run_pair_job
from jobs.score.plan import estimate, plan_parts, replan_from, replica_bytes, token_lengths
from jobs.score.running import (
    JobInterrupted,
    JobStopped,
    ModelLoadError,
    marker,
    missing_parts,
    score_parts,
    store_bytes,
    stored_attrs,
)
from jobs.score.step import ScoreSpec, load_scorer, score_part
from jobs.score.summary import Summary
from jobs.score.validate import CheckedJob, JobError, check_job, check_output
from vzcore.store.completion import write_done
from vzcore.store.location import Location
from vzcore.store.root import RootAttrs, write_root_attrs
from vzcore.store.writer import clear_store

__all__ = ["JobError", "JobInterrupted", "JobStopped", "ModelLoadError", "Summary", "run_job"]


def run_job(cfg: JobConfig, *, on_event: Callable[[Event], None] | None = None) -> Summary:
    """Run the scoring job described by `cfg`; return its summary. Raises `JobError` on bad arguments,
    `cluster.connect.ClusterError` where the run cannot go as `cfg.where` asks."""
    if is_pair_job(cfg):  # an encoder-decoder: (source, target) pairs, every site (layout v5)
        return run_pair_job(cfg, on_event=on_event)
    job = check_job(cfg)
    data_id, identity = identities(job)

    stored = {} if cfg.overwrite or cfg.dry_run else stored_attrs(cfg)
    if stored:  # refuse a mismatching store before reading any data
        check_identity(stored, data_id, identity)
    # A store never shrinks its plan: a smaller --limit finishes the stored one.
    stored_plan = stored.get("plan", [])
    stored_count = max((p["stop"] for p in stored_plan), default=0)
    limit = None if cfg.limit is None else max(cfg.limit, stored_count)
    try:
        column = job.targets.column if job.targets.kind == "column" else None
        source = open_texts(cfg.dataset, cfg.config, cfg.split, cfg.text_column, limit, cfg.format, column)
    except DatasetError as err:
        raise JobError(str(err)) from None

    plan, lengths, truncated = _plan(job, source, stored_plan)
    summary = Summary(store=cfg.out, planned_parts=len(plan), form_line=_form_line(job, lengths))
    if cfg.dry_run:
        summary.plan_lines = _dry_run_lines(job, source, plan, lengths, truncated)
        if summary.form_line:
            summary.plan_lines.append(f"maps stored  {summary.form_line}")
        return summary
    # What is missing, read only (a changed dataset is refused here); read again under the lease.
    tasks, _ = missing_parts(cfg, bool(stored), plan, source)

    # Connect (and check the cluster) before anything is written; a finished store needs no cluster.
    # SIGTERM (a batch scheduler's first word) stops the run as Ctrl-C does, in this process or on Ray.
    # No actor without a part to score (a finished store needs no cluster), none more than parts.
    actors = 0 if not tasks else None if cfg.actors is None else min(cfg.actors, len(tasks))
    vocab = getattr(job.model.config, "vocab_size", None) or len(job.tokenizer)
    memory = replica_bytes(job.model.geometry, vocab, cfg.memory_budget)  # one model copy per actor
    where = dataclasses.replace(cfg.where, actors=actors, replica_bytes=memory)
    opened = open_executor(where, replica=True, outputs=[cfg.location], units=len(tasks))
    with interrupt_on_sigterm(), opened as (executor, placement):
        check_output(cfg)  # after the data and the cluster: a refused run leaves no folder behind
        with hold_lease(cfg.location, break_lock=cfg.break_lock):
            # Under the lease, read the root again: it is merged with, never overwritten blindly.
            stored = {} if cfg.overwrite else stored_attrs(cfg)
            if stored:
                check_identity(stored, data_id, identity)
            tasks, done = missing_parts(cfg, bool(stored), plan, source)
            summary.parts_run = len(tasks)
            root, attrs = _write_root(job, stored, plan, data_id, identity, done)
            if tasks:
                spec = _score_spec(job, attrs.special_token_ids, placement)
                step = {"step": score_part, "replica": functools.partial(load_scorer, spec)}
                score_parts(cfg, executor, tasks, source, summary, on_event, marker(root, attrs), **step)
    summary.store_bytes = store_bytes(cfg)
    return summary


def _form_line(job: CheckedJob, lengths: np.ndarray) -> str:
    """Say how maps are stored when not dense and of every row (`--store`, `--targets`); "" when they are."""
    said = []
    if job.form.kind == "auto":
        long = int((np.asarray(lengths) > job.form.dense_max_tokens).sum())
        said.append(
            f"--store auto: {long} of the {len(lengths)} newly planned examples are longer than "
            f"{job.form.dense_max_tokens} tokens and are stored as top-{job.form.k} sources per row at or above "
            f"{job.form.threshold:g} (the kept mass per row is stored); the others dense"
        )
    elif job.form.words:
        said.append(f"--store words: {job.form.describe()}, with each word's tokens and text")
    elif job.form.reduced:
        said.append(f"--store {job.form.describe()} (the kept mass per row is stored)")
    if not job.targets.all_rows:
        held = "the words holding them" if job.form.words else "those rows"
        said.append(f"--targets {job.targets.kind}: only those rows are scored, and {held} stored")
    return "; ".join(said)


def _plan(job: CheckedJob, source, stored_plan: list[dict]) -> tuple[list[dict], np.ndarray, int]:
    """Return the run's plan, and the token counts (and how many will be truncated) of the rows it
    planned anew: the stored plan is kept but for its last part, which a larger limit may extend.
    One streaming pass over those rows with batched tokenizer calls; no text is kept."""

    kept, start, last = replan_from(stored_plan)
    counts, truncated = [], 0
    for rows in source.batches(start):
        n, cut = token_lengths(job.tokenizer, rows, job.max_length)
        counts.append(n)
        truncated += cut
    lengths = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int32)
    cfg = job.cfg
    fresh = plan_parts(
        lengths,
        layers=len(job.layers),
        causal=job.model.family.causal,
        part_mb=cfg.part_mb,
        part_size=cfg.part_size,
        start=start,
        first_part=len(kept),
        form=job.form if job.form.reduced else None,
        last_row_only=job.targets.kind == "last",
        at_least=last,
    )
    return kept + fresh, lengths, truncated


def _dry_run_lines(job: CheckedJob, source, plan: list[dict], lengths: np.ndarray, truncated: int) -> list[str]:
    cfg, geo = job.cfg, job.model.geometry
    sizes = [p["stop"] - p["start"] for p in plan]
    cap = f", at most {cfg.part_size} examples" if cfg.part_size else ""
    est = estimate(
        lengths,
        truncated=truncated,
        layers=len(job.layers),
        hidden=geo.hidden,
        ffn=geo.ffn,
        causal=job.model.family.causal,
        methods=list(cfg.methods),
        itemsize=2 if cfg.store_dtype == "float16" else 4,
        targets=job.targets.kind,
    )
    return [
        f"dataset      {cfg.dataset or 'chatterbot-corpus english'} [{cfg.split}] column {cfg.text_column!r}: "
        f"{source.count} of {source.total} rows",
        f"model        {cfg.model} ({job.model.config.model_type}, {geo.num_layers} layers, storing {len(job.layers)})",
        f"methods      {', '.join(cfg.methods)}",
        f"parts        {len(plan)} of up to {cfg.part_mb:g} MiB of maps per method{cap}"
        f" ({min(sizes, default=0)} to {max(sizes, default=0)} examples)",
        *est.lines(),
    ]


def _write_root(job: CheckedJob, stored: dict, plan: list[dict], data_id: str, identity: dict, done: list):
    """Open the store for writing and write its root attributes, plan and completion index (rebuilt
    from `done`, each part's complete methods as its own attributes say): only this driver writes them."""

    cfg, tok = job.cfg, job.tokenizer
    if cfg.overwrite:
        clear_store(cfg.location)  # only the store's own entries; check_output proved it is one
    root = cfg.location.open_group(mode="a")
    attrs = RootAttrs(
        methods=list(dict.fromkeys([*stored.get("methods", []), *cfg.methods])),
        layers=job.layers,
        model_num_layers=job.model.geometry.num_layers,
        causal=job.model.family.causal,
        model_type=str(job.model.config.model_type),
        plan=plan,
        special_token_ids=sorted(int(i) for i in getattr(tok, "all_special_ids", [])),
        config={**cfg.to_record(), "model_source": job.model.files, "layers": job.layers},
        identity={**stored.get("identity", {}), **identity},
        data_identity=data_id,
        versions=stored.get("versions") or versions(),
        store_form=job.form.to_attr() if job.form.reduced else None,
        targets=job.targets.to_attr(),
    )
    write_root_attrs(root, attrs)
    write_done(root, [attrs.mask_of(methods) for methods in done])
    return root, attrs


def _score_spec(job: CheckedJob, special_ids, placement: Placement) -> ScoreSpec:
    """What each worker scores with: sent to every worker, so its store carries no secret (`cluster.credentials`)."""
    cfg = job.cfg
    return ScoreSpec(
        model=job.model.files,
        methods=tuple(cfg.methods),
        options=tuple(cfg.options),
        layers=tuple(job.layers),
        max_length=cfg.max_length,
        precision=cfg.precision,
        batch_size=cfg.batch_size,
        memory_budget=cfg.memory_budget,
        location=Location(cfg.out, public_options(cfg.out, cfg.storage_options)),
        store_dtype=cfg.store_dtype,
        causal=job.model.family.causal,
        num_maps=len(job.layers),
        num_threads=placement.num_threads,
        device=placement.device,
        special_ids=tuple(special_ids),
        form=job.form,
        targets=job.targets,
        mask_id=getattr(job.tokenizer, "mask_token_id", None),
    )
