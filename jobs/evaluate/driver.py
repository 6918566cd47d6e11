"""The evaluation drivers: cue alignment on number agreement and blank-out faithfulness (Mohebbi et al. 2023, §5).

    vz evaluate cue-alignment --model minilm --limit 50 --out runs/eval-minilm
    vz evaluate blank-out --model smollm2 --removal mask --output prob --out runs/blank-smollm2
    vz evaluate cue-alignment --model smollm2 --address 127.0.0.1:6379 --actors 4 --device cuda

Plan (no weights: the tokenizer turns examples into probes), then score chunks of probes through
an executor (`cluster.where`: in this process, or Ray actors with `--address` or `--actors N`,
placed as scoring's are: GPUs with `--device cuda`) with `jobs.evaluate.step`: target
rows only, `|targets| · n` pairs per layer. Each chunk writes its rows and a completion marker into
`OUT/units/`; a rerun skips the chunks already done. Tables, plots and the report come from the
stored rows (`jobs.evaluate.report`), so changing `--cue-tokens` needs no scoring at all.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cluster.executor import ReplicaError, Unit
from cluster.where import Where, open_executor
from jobs.evaluate.report import write_outputs
from jobs.evaluate.step import EvalTask, evaluate_chunk, load_evaluator, unit_paths
from jobs.score.validate import JobError
from vzcore.evaluation.blimp import PARADIGMS, BlimpError, load_agreement_jsonl, load_blimp
from vzcore.evaluation.predictions import OUTPUTS, REMOVALS, removal_token
from vzcore.evaluation.probes import make_probes
from vzcore.families import UnsupportedModelError
from vzcore.inputs import check_tokenizer
from vzcore.loading import ModelNotFoundError, locate_model, max_input_length
from vzcore.methods.registry import _METHODS, UnknownMethodError, get_method, split_options
from vzcore.store.location import Location

__all__ = ["KINDS", "EvalConfig", "EvalRun", "default_methods", "run_evaluation"]

KINDS = ("cue-alignment", "blank-out")
SLOW_METHODS = ("integrated_gradients",)  # ~40 s a sentence on a CPU: asked for by name only
OUR_FILES = {"units", "config.json", "examples.parquet", "summary.parquet", "accuracy.parquet", "report.md"}


@dataclass(frozen=True)
class EvalConfig:
    """Options of one evaluation run."""

    kind: str  # one of KINDS
    model: str = "minilm"
    methods: tuple[str, ...] | None = None  # None: every registered method but SLOW_METHODS
    phenomena: tuple[str, ...] | None = None  # BLiMP paper ids; None: all that apply
    blimp: str | None = None  # None: the shipped copies; a folder of BLiMP JSONL files; a hub name
    data: str | None = None  # a user's agreement JSONL instead of BLiMP
    limit: int | None = 100  # examples per phenomenon (None: all)
    out: str | None = None  # default: runs/<kind>-<model>
    first_subtoken: bool = False  # mark only each cue word's first sub-token (as the authors did)
    removal: str = "mask"  # blank-out: mask | unk | delete
    output: str = "auto"  # blank-out: auto | prob | argmax | diff | cosine
    options: tuple[tuple[str, object], ...] = ()  # method options, as for `vz score --option`
    chunk_size: int = 16  # examples per unit
    # Where the units run (`cluster.where.Where`, the same fields): in this process unless `address`
    # or `actors` says Ray (`address` "local": a local cluster on loopback).
    address: str | None = None  # a Ray cluster to join: HOST:PORT or auto
    actors: int | None = None  # model replicas on Ray; 0 or None without an address: in this process
    device: str = "auto"  # auto, cpu or cuda: on Ray, cuda asks each actor for `gpus_per_actor` GPUs
    gpus_per_actor: float = 1.0
    cpus_per_actor: int | None = None
    overwrite: bool = False

    @property
    def where(self) -> Where:
        """Where the units run."""
        return Where.given(
            actors=self.actors,
            address=self.address,
            in_process=True,
            device=self.device,
            gpus_per_actor=self.gpus_per_actor,
            cpus_per_actor=self.cpus_per_actor,
        )

    @property
    def out_dir(self) -> Path:
        name = Path(self.model.rstrip("/")).name
        return Path(self.out or f"runs/{self.kind}-{name}").absolute()


@dataclass
class EvalRun:
    """What a run did, and what it wrote."""

    out: Path
    methods: list[str]
    notes: list[str] = field(default_factory=list)
    units_run: int = 0
    units_reused: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # example id -> why it does not apply
    tables: dict = field(default_factory=dict)  # name -> DataFrame
    files: list[str] = field(default_factory=list)


def _skipped(name: str, method, family) -> str:
    """Say why a method that does not support `family` is left out: the block layouts it is defined for."""
    layouts = " and ".join(method.layouts or ())
    return f"{name} skipped: defined for {layouts} blocks only, and {family.name} blocks are {family.shape.layout}"


def default_methods(family) -> tuple[list[str], list[str]]:
    """Return every registered method this `family` supports but the slow ones, and notes on those left out."""

    methods, notes = [], []
    for name, m in sorted(_METHODS.items()):
        if name in SLOW_METHODS:
            notes.append(f"{name} left out by default (about 40 s a sentence on a CPU): ask for it with --methods")
        elif not m.supports(family):
            notes.append(_skipped(name, m, family))
        else:
            methods.append(name)
    return methods, notes


def _check_methods(cfg: EvalConfig, family) -> tuple[list[str], list[str]]:
    if cfg.methods is None:
        methods, notes = default_methods(family)
    else:
        methods, notes = [], []
        for name in cfg.methods:
            try:
                m = get_method(name)
            except UnknownMethodError as err:
                raise JobError(str(err)) from None
            if m.supports(family):
                methods.append(name)
            else:
                notes.append(_skipped(name, m, family))
    if not methods:
        raise JobError(f"no method applies to {cfg.model}: {'; '.join(notes)}")
    try:
        split_options([get_method(m) for m in methods], dict(cfg.options))
    except (TypeError, ValueError) as err:
        raise JobError(str(err)) from None
    return methods, notes


def _examples(cfg: EvalConfig):
    try:
        if cfg.data is not None:
            examples = load_agreement_jsonl(cfg.data)
            wanted = cfg.phenomena
            if wanted:
                examples = [e for e in examples if e.phenomenon in wanted]
            if cfg.limit:
                kept, seen = [], {}
                for e in examples:
                    seen[e.phenomenon] = seen.get(e.phenomenon, 0) + 1
                    if seen[e.phenomenon] <= cfg.limit:
                        kept.append(e)
                examples = kept
            return examples
        return load_blimp(cfg.blimp, cfg.phenomena or tuple(PARADIGMS), cfg.limit)
    except BlimpError as err:
        raise JobError(str(err)) from None


def _check_simple(cfg: EvalConfig) -> None:
    if cfg.kind not in KINDS:
        raise JobError(f"unknown evaluation {cfg.kind!r}; choose from: {', '.join(KINDS)}")
    if cfg.limit is not None and cfg.limit < 0:
        raise JobError(f"--limit must be 0 (all) or more, not {cfg.limit}")
    if cfg.chunk_size < 1:
        raise JobError(f"--chunk-size must be at least 1, not {cfg.chunk_size}")
    try:
        cfg.where.check()
    except ValueError as err:
        raise JobError(str(err)) from None
    if cfg.removal not in REMOVALS:
        raise JobError(f"unknown --removal {cfg.removal!r}; choose from: {', '.join(REMOVALS)}")
    if cfg.output not in OUTPUTS:
        raise JobError(f"unknown --output {cfg.output!r}; choose from: {', '.join(OUTPUTS)}")


def _check_out(cfg: EvalConfig) -> None:
    out = cfg.out_dir
    if out.exists() and not out.is_dir():
        raise JobError(f"--out {out} exists and is not a folder")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OUR_FILES and p.suffix != ".png")
        if foreign:
            raise JobError(f"--out {out} holds files of something else ({', '.join(foreign[:3])}): choose another")
        config = out / "config.json"
        if config.exists() and not cfg.overwrite:
            old = json.loads(config.read_text())
            if (old.get("kind"), old.get("model")) != (cfg.kind, cfg.model):
                raise JobError(
                    f"--out {out} holds a {old.get('kind')} run of {old.get('model')}: "
                    "pass --overwrite or choose another"
                )


def _plan(cfg: EvalConfig, log: Callable[[str], None]):
    """Check everything and build the probes and units; no weights are read."""

    _check_simple(cfg)
    try:
        source = locate_model(cfg.model)
        tokenizer = source.load_tokenizer()
        check_tokenizer(tokenizer, f"model {cfg.model!r}")
    except (UnsupportedModelError, ModelNotFoundError, ModuleNotFoundError, ValueError) as err:
        raise JobError(str(err)) from None
    causal = source.family.causal
    methods, notes = _check_methods(cfg, source.family)
    if cfg.kind == "blank-out":
        try:
            removal_token(tokenizer, cfg.removal)
        except ValueError as err:
            raise JobError(str(err)) from None
    examples = _examples(cfg)
    if not examples:
        raise JobError("no examples to evaluate (check --phenomena and --limit)")
    probes, skipped = make_probes(
        examples,
        tokenizer,
        causal,
        first_subtoken=cfg.first_subtoken,
        max_length=max_input_length(source.config, tokenizer, source.family),
    )
    for phen in sorted({e.phenomenon for e in examples} - {p.phenomenon for p in probes}):
        notes.append(
            f"{phen} does not apply to this {'causal' if causal else 'masked'} model: {_first_reason(skipped, phen)}"
        )
    if not probes:
        raise JobError(f"no example applies to {cfg.model}: {next(iter(skipped.values()))}")
    _check_out(cfg)
    for line in notes:
        log(f"note: {line}")
    return methods, notes, probes, skipped


def _first_reason(skipped: dict[str, str], phen: str) -> str:
    reasons = [r.split(": ", 1)[-1] for k, r in skipped.items() if k.startswith(f"{phen}-")]
    return reasons[0] if reasons else "no example"


def _identity(cfg: EvalConfig, methods: list[str], probes) -> str:
    blob = {
        "kind": cfg.kind,
        "model": cfg.model,
        "methods": methods,
        "options": [list(o) for o in cfg.options],
        "blank_out": [cfg.removal, cfg.output] if cfg.kind == "blank-out" else None,
        "probes": [[p.example_id, list(p.token_ids), p.row, list(p.special)] for p in probes],
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_evaluation(cfg: EvalConfig, log: Callable[[str], None] = print) -> EvalRun:
    """Run the evaluation `cfg` describes and write its tables, plots and report; return what it did."""

    methods, notes, probes, skipped = _plan(cfg, log)
    out = cfg.out_dir
    run = EvalRun(out=out, methods=methods, notes=notes, skipped=skipped)
    tasks = []
    for key, start in enumerate(range(0, len(probes), cfg.chunk_size)):
        chunk = tuple(probes[start : start + cfg.chunk_size])
        task = EvalTask(
            key=key,
            identity=_identity(cfg, methods, chunk),
            out=str(out),
            kind=cfg.kind,
            probes=chunk,
            methods=tuple(methods),
            options=cfg.options,
            removal=cfg.removal,
            output=cfg.output,
        )
        tasks.append(task)
    todo = [t for t in tasks if cfg.overwrite or not _done(t)]
    run.units_run, run.units_reused = len(todo), len(tasks) - len(todo)
    # Connect (and check the cluster) before anything is written: the units go to a local folder, which
    # a cluster of several nodes refuses. Nothing left to score needs no cluster.
    where = cfg.where if todo else dataclasses.replace(cfg.where, actors=0)
    with open_executor(where, replica=True, outputs=[Location(str(out))]) as (executor, placement):
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({**asdict(cfg), "methods": methods, "notes": notes}, default=str))
        if not todo:
            log(f"every unit is done ({len(tasks)} reused): rebuilding the tables")
        else:
            log(f"scoring {sum(len(t.probes) for t in todo)} examples in {len(todo)} units ({run.units_reused} reused)")
            replica = functools.partial(load_evaluator, cfg.model, placement.device, placement.num_threads)
            try:
                report = executor.run([Unit(t.key, t) for t in todo], evaluate_chunk, replica=replica)
            except ReplicaError as err:
                raise RuntimeError(f"cannot load model {cfg.model}: {err}") from None
            if report.lost:
                key, reason = next(iter(sorted(report.lost.items())))
                raise RuntimeError(
                    f"{len(report.lost)} unit(s) failed (first: unit {key}: {reason}); rerun to retry them"
                )
    rows, model_side, has_head = _read_units(tasks)
    run.tables, run.files = write_outputs(cfg, run, probes, rows, model_side, has_head)
    return run


def _done(task: EvalTask) -> bool:
    rows, marker = unit_paths(task.out, task.key)
    if not (rows.exists() and marker.exists()):
        return False
    try:
        return json.loads(marker.read_text()).get("identity") == task.identity
    except (OSError, json.JSONDecodeError):
        return False


def _read_units(tasks: list[EvalTask]) -> tuple[dict, dict, bool]:
    """Return `{(example id, method): (layers, [layers, n] rows)}`, each example's model-side record,
    and whether the model has an LM head."""
    import pyarrow.parquet as pq

    rows: dict[tuple[str, str], tuple[list[int], np.ndarray]] = {}
    model_side: dict[str, dict] = {}
    has_head = False
    for task in tasks:
        path, marker = unit_paths(task.out, task.key)
        table = pq.read_table(path).to_pydict()
        for eid, method, layers, n, flat in zip(
            table["example_id"], table["method"], table["layers"], table["n"], table["row"], strict=True
        ):
            rows[(eid, method)] = (layers, np.asarray(flat, dtype=np.float64).reshape(len(layers), n))
        info = json.loads(marker.read_text())
        model_side.update(info["model"])
        has_head = info["has_head"]
    return rows, model_side, has_head
