"""The corpus scoring job: plan parts, score them on Ray actors, write a Zarr store, summarise.

    python -m jobs.score --out runs/chatterbot.zarr                 # MiniLM on 200 chatterbot lines
    python -m jobs.score --out runs/c.zarr --methods value_zeroing,attention,attention_norm --limit 1000 --actors 2
    python -m jobs.score --dataset corpus.jsonl --text-column body --model smollm2 --layers 0,15,29 \
        --out s3://bucket/run.zarr --storage-option endpoint_url=http://127.0.0.1:5000 --dry-run
    vz score --out runs/chatterbot.zarr                             # the same through the `vz` command

Rerunning a command finishes what is missing (and does nothing on a finished store); a larger
`--limit` or another method scores only what is new. Ray is imported only when scoring starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import typer

from jobs.config import DEFAULT_LIMIT, DEFAULT_PART_SIZE, JobConfig, is_url
from jobs.worker import ReplicaLoadError

__all__ = ["JobError", "Summary", "run_job", "score_command"]


class JobError(ValueError):
    """Bad arguments or a store that does not match: raised before any model is loaded."""


@dataclass
class ModelInfo:
    source: str
    num_layers: int
    layers: list[int]
    causal: bool
    model_type: str
    hidden: int
    ffn: int
    fingerprint: str
    tokenizer: object


@dataclass
class Summary:
    """What a run did; `exit_code` is 0 unless parts were lost to repeated actor deaths."""

    store: str
    planned_parts: int = 0
    parts_run: int = 0
    examples: int = 0
    scored: int = 0
    skipped: int = 0
    failed: int = 0
    truncated: int = 0
    tokens: int = 0
    failures: dict[int, str] = field(default_factory=dict)
    lost_parts: dict[int, str] = field(default_factory=dict)
    actor_deaths: int = 0
    devices: set[str] = field(default_factory=set)  # where the replicas scored
    oom_halvings: int = 0
    bytes_written: int = 0
    startup_seconds: float = 0.0
    scoring_seconds: float = 0.0
    plan_lines: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.lost_parts else 0

    def lines(self) -> list[str]:
        rate = self.scoring_seconds or float("nan")
        out = [
            f"store        {self.store}",
            f"parts        {self.parts_run} run of {self.planned_parts} planned",
            f"examples     {self.examples} run: {self.scored} scored, {self.skipped} skipped (empty), "
            f"{self.failed} failed, {self.truncated} truncated",
            f"tokens       {self.tokens}",
            f"throughput   {self.examples / rate:.2f} examples/s, {self.tokens / rate:.1f} tokens/s "
            f"over {self.scoring_seconds:.1f} s (+{self.startup_seconds:.1f} s start-up)",
            f"store bytes  {self.bytes_written / 2**20:.2f} MiB",
        ]
        if self.devices:
            out.append(f"devices      {', '.join(sorted(self.devices))}")
        if self.oom_halvings:
            out.append(f"memory       out-of-memory errors halved the pair budget {self.oom_halvings} time(s)")
        if self.actor_deaths:
            out.append(f"actor deaths {self.actor_deaths} (their parts were redone)")
        for i, reason in sorted(self.failures.items()):
            out.append(f"failed       example {i}: {reason}")
        for p, reason in sorted(self.lost_parts.items()):
            out.append(f"LOST PART    {p}: {reason}")
        return out


# ----------------------------------------------------------------------------- validation


def _check_methods(cfg: JobConfig) -> dict:
    from vzcore.methods.registry import UnknownMethodError, get_method, split_options

    if not cfg.methods:
        raise JobError("no methods given")
    try:
        chosen = [get_method(m) for m in cfg.methods]
        configs = split_options(chosen, dict(cfg.options))
    except (UnknownMethodError, TypeError) as err:
        raise JobError(str(err)) from None
    return {name: _jsonable(c.__dict__) for name, c in configs.items()}


def _check_device(cfg: JobConfig) -> None:
    from cluster.placement import check_request

    try:
        check_request(cfg.device, cfg.gpus_per_actor, cfg.cpus_per_actor)
    except ValueError as err:
        raise JobError(str(err)) from None
    if cfg.device == "cuda" and cfg.actors == 0:
        import torch

        if not torch.cuda.is_available():
            raise JobError("--device cuda with --actors 0 needs a GPU in this process, and torch sees none")


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


def _check_output(cfg: JobConfig) -> None:
    import fsspec

    probe = f"{cfg.out.rstrip('/')}/.vz-write-probe"
    try:
        if is_url(cfg.out):
            fs, path = fsspec.core.url_to_fs(probe, **cfg.storage_options)
            fs.pipe_file(path, b"ok")
            fs.rm_file(path)
        else:
            out = Path(cfg.out)
            if out.exists() and not out.is_dir():
                raise JobError(f"output {cfg.out} exists and is not a directory")
            out.mkdir(parents=True, exist_ok=True)
            Path(probe).write_bytes(b"ok")
            Path(probe).unlink()
    except JobError:
        raise
    except Exception as err:
        raise JobError(f"cannot write to output {cfg.out}: {type(err).__name__}: {err}") from None


def _fingerprint(source: str) -> str:
    """Hash every file of a local model (weights, config, tokenizer); a hub name hashes as its name."""
    path = Path(source)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        h.update(f"name:{source}".encode())
    for p in files:
        h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
        with p.open("rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
    return h.hexdigest()[:32]


def _model_info(cfg: JobConfig) -> ModelInfo:
    """Read the model's config and tokenizer (not its weights)."""
    from transformers import AutoConfig, AutoTokenizer

    from vzcore.families import UnsupportedModelError, family_for
    from vzcore.loading import resolve_short_name

    try:
        source = resolve_short_name(cfg.model)
        kw: dict = {}
        p = Path(source)
        if p.is_file() and p.suffix == ".gguf":
            source, kw["gguf_file"] = str(p.parent), p.name
        mc = AutoConfig.from_pretrained(source, **kw)
        family = family_for(mc)
        tok = AutoTokenizer.from_pretrained(source, **kw)
    except (UnsupportedModelError, ModuleNotFoundError) as err:
        raise JobError(str(err)) from None
    except Exception as err:
        raise JobError(f"cannot load model {cfg.model!r}: {type(err).__name__}: {err}") from None
    num_layers = int(getattr(mc, "num_hidden_layers", None) or mc.n_layer)
    layers = list(range(num_layers)) if cfg.layers is None else list(cfg.layers)
    for layer in layers:
        if not -num_layers <= layer < num_layers:
            raise JobError(f"layer {layer} out of range: the model has {num_layers} layers (0..{num_layers - 1})")
    hidden = int(getattr(mc, "hidden_size", None) or getattr(mc, "n_embd", 0))
    ffn = int(getattr(mc, "intermediate_size", None) or getattr(mc, "n_inner", None) or 4 * hidden)
    return ModelInfo(
        source=str(Path(source) / kw["gguf_file"]) if kw else source,
        num_layers=num_layers,
        layers=sorted({x % num_layers for x in layers}),
        causal=bool(family.causal),
        model_type=str(getattr(mc, "model_type", "")),
        hidden=hidden,
        ffn=ffn,
        fingerprint=_fingerprint(str(Path(source) / kw["gguf_file"]) if kw else source),
        tokenizer=tok,
    )


def _versions() -> dict:
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for pkg in ("vzcore", "torch", "transformers", "zarr", "ray", "datasets", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _identities(cfg: JobConfig, info: ModelInfo, method_options: dict) -> tuple[str, dict]:
    # What the shared example and token arrays depend on: the examples, the tokens and the layer count.
    data = {
        "dataset": cfg.dataset,
        "config": cfg.config,
        "split": cfg.split,
        "text_column": cfg.text_column,
        "part_size": cfg.part_size,
        "model": info.fingerprint,
        "max_length": cfg.max_length,
        "layers": info.layers,
    }
    data_id = _hash(data)
    per_method = {
        m: _hash(
            {
                "data": data_id,
                "method": m,
                "options": method_options[m],
                "precision": cfg.precision,
                "store_dtype": cfg.store_dtype,
            }
        )
        for m in cfg.methods
    }
    return data_id, per_method


# ----------------------------------------------------------------------------- the run


def _lengths(tok, texts, max_length: int | None) -> list[int]:
    limit = max_length or getattr(tok, "model_max_length", None)
    limit = limit if limit and limit < 1_000_000 else None
    out = []
    for t in texts:
        if not isinstance(t, str) or not t.strip():
            out.append(0)
        else:
            out.append(len(tok(t, truncation=limit is not None, max_length=limit)["input_ids"]))
    return out


def _store_bytes(cfg: JobConfig) -> int:
    import fsspec

    fs, path = fsspec.core.url_to_fs(cfg.out, **(cfg.storage_options if is_url(cfg.out) else {}))
    try:
        return int(fs.du(path, total=True))
    except FileNotFoundError:
        return 0


def run_job(cfg: JobConfig, *, on_event=None, echo=print) -> Summary:
    """Run the scoring job described by `cfg`; return its summary. Raises `JobError` on bad arguments."""
    method_options = _check_methods(cfg)
    if cfg.part_size < 1 or cfg.batch_size < 1 or cfg.actors < 0:
        raise JobError("--part-size and --batch-size must be at least 1, --actors at least 0")
    if cfg.store_dtype not in ("float16", "float32"):
        raise JobError(f"--store-dtype must be float16 or float32, not {cfg.store_dtype!r}")
    _check_device(cfg)
    info = _model_info(cfg)
    data_id, identity = _identities(cfg, info, method_options)
    from jobs.data import DatasetError, load_texts

    # The store (read only here): its identity must match, and a store never shrinks its plan.
    stored: dict = {}
    if not cfg.dry_run:
        _check_output(cfg)
        from vzcore.store.writer import open_root

        try:
            stored = (
                {} if cfg.overwrite else dict(open_root(cfg.out, mode="a", storage_options=cfg.storage_options).attrs)
            )
        except Exception as err:
            raise JobError(f"cannot open store {cfg.out}: {type(err).__name__}: {err}") from None
        if stored:
            _check_identity(stored, data_id, identity)
    stored_count = max((p["stop"] for p in stored.get("plan", [])), default=0)
    limit = None if cfg.limit is None else max(cfg.limit, stored_count)
    try:
        texts, total = load_texts(cfg.dataset, cfg.config, cfg.split, cfg.text_column, limit)
    except DatasetError as err:
        raise JobError(str(err)) from None

    from jobs.plan import estimate, plan_parts

    plan = plan_parts(len(texts), cfg.part_size)
    summary = Summary(store=cfg.out, planned_parts=len(plan))
    if cfg.dry_run:
        est = estimate(
            _lengths(info.tokenizer, texts, cfg.max_length),
            layers=len(info.layers),
            hidden=info.hidden,
            ffn=info.ffn,
            causal=info.causal,
            methods=list(cfg.methods),
            itemsize=2 if cfg.store_dtype == "float16" else 4,
        )
        summary.plan_lines = [
            f"dataset      {cfg.dataset or 'chatterbot-corpus english'} [{cfg.split}] column {cfg.text_column!r}: "
            f"{len(texts)} of {total} rows",
            f"model        {cfg.model} ({info.model_type}, {info.num_layers} layers, storing {len(info.layers)})",
            f"methods      {', '.join(cfg.methods)}",
            f"parts        {len(plan)} of up to {cfg.part_size} examples",
            *est.lines(),
        ]
        return summary
    return _run(cfg, info, texts, plan, stored, data_id, identity, summary, on_event, echo)


def _check_identity(stored: dict, data_id: str, identity: dict) -> None:
    if stored.get("data_identity") != data_id:
        raise JobError(
            "the store holds another run (dataset, part size, model weights/tokenizer, max length or layers "
            "differ); pass --overwrite to replace it, or choose another --out"
        )
    clash = [m for m, h in identity.items() if m in stored.get("identity", {}) and stored["identity"][m] != h]
    if clash:
        raise JobError(
            f"the store's {clash} scores were made with other options, precision or store dtype; "
            "pass --overwrite to replace the store, or choose another --out"
        )
    if stored.get("versions") and stored["versions"] != _versions():
        warnings.warn(
            f"package versions differ from the store's: {stored['versions']} (now {_versions()})", stacklevel=3
        )


def _run(cfg, info, texts, plan, stored, data_id, identity, summary, on_event, echo) -> Summary:
    from jobs.worker import PartTask, WorkerSpec
    from vzcore.store.layout import LAYOUT_VERSION, complete_methods
    from vzcore.store.writer import open_root, part_state

    root = open_root(cfg.out, mode="w" if cfg.overwrite else "a", storage_options=cfg.storage_options)
    # Only this driver writes the root attrs; each part group has its own single writer.
    methods = list(dict.fromkeys([*stored.get("methods", []), *cfg.methods]))
    tok = info.tokenizer
    root.attrs.update(
        {
            "vz_layout": LAYOUT_VERSION,
            "config": {**cfg.to_record(), "model_source": info.source, "layers": info.layers},
            "identity": {**stored.get("identity", {}), **identity},
            "data_identity": data_id,
            "versions": stored.get("versions") or _versions(),
            "plan": plan,
            "methods": methods,
            "layers": info.layers,
            "num_layers": info.num_layers,
            "causal": info.causal,
            "model_type": info.model_type,
            "special_token_ids": sorted(int(i) for i in getattr(tok, "all_special_ids", [])),
        }
    )
    tasks = []
    for p in plan:
        state = part_state(root, p["part"]) or {}
        same = state.get("start") == p["start"] and state.get("stop") == p["stop"]
        done = complete_methods(state) if same else []
        missing = tuple(m for m in cfg.methods if m not in done)
        if missing:
            tasks.append(PartTask(p["part"], p["start"], p["stop"], tuple(texts[p["start"] : p["stop"]]), missing))
    summary.parts_run = len(tasks)
    if tasks:
        spec = WorkerSpec(
            model=info.source,
            methods=tuple(cfg.methods),
            options=tuple(cfg.options),
            layers=tuple(info.layers),
            max_length=cfg.max_length,
            precision=cfg.precision,
            batch_size=cfg.batch_size,
            memory_budget=cfg.memory_budget,
            store=cfg.out,
            store_dtype=cfg.store_dtype,
            causal=info.causal,
            num_layers=len(info.layers),
            storage_options=dict(cfg.storage_options),
        )
        _score(cfg, spec, tasks, summary, on_event)
    if not summary.lost_parts:
        from jobs.tables import write_tables

        write_tables(cfg.out, root, plan, texts, cfg.storage_options)
    summary.bytes_written = _store_bytes(cfg)
    return summary


def _score(cfg, spec, tasks, summary: Summary, on_event) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(
        total=sum(t.stop - t.start for t in tasks),
        unit="ex",
        disable=not cfg.progress,
        desc="scoring",
        dynamic_ncols=True,
    )
    tokens = [0]
    t0 = time.perf_counter()

    def progress(examples: int, tok: int) -> None:
        tokens[0] += tok
        bar.update(examples)
        elapsed = max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix(tok_s=f"{tokens[0] / elapsed:.0f}", failed=summary.failed, refresh=False)

    def event(ev) -> None:
        if ev[0] == "progress":
            progress(ev[2], ev[3])
        elif ev[0] == "waiting":
            bar.write(
                f"no actor ready yet: {ev[1]} loading the model or waiting for cluster resources "
                f"({ev[2]:g} CPU, {ev[3]:g} GPU each)"
            )
        if on_event:
            on_event(ev)

    def report(r) -> None:
        summary.examples += r.examples
        summary.scored += r.scored
        summary.failed += r.failed
        summary.skipped += r.skipped
        summary.truncated += r.truncated
        summary.tokens += r.tokens
        summary.failures.update(r.failures)
        summary.devices.add(r.device)
        summary.oom_halvings += r.oom_halvings

    try:
        if cfg.actors == 0:
            from jobs.worker import load_worker_model, run_part

            handle = load_worker_model(dataclasses.replace(spec, device=None if cfg.device == "auto" else cfg.device))
            summary.startup_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            for task in tasks:
                report(run_part(handle, spec, task, progress))
        else:
            from cluster.local import cluster_resources, connect, node_count
            from cluster.placement import actor_shape, actors_that_fit
            from cluster.pool import run_pool

            with connect(cfg.address) as started_here:
                if node_count() > 1 and not is_url(cfg.out):
                    raise JobError(
                        f"{cfg.out} is a local path but the cluster has {node_count()} nodes: "
                        "write to shared object storage (s3://...) instead"
                    )
                res = cluster_resources()
                shape = actor_shape(  # the request was checked before anything loaded
                    res,
                    device=cfg.device,
                    actors=cfg.actors,
                    gpus_per_actor=cfg.gpus_per_actor,
                    cpus_per_actor=cfg.cpus_per_actor,
                )
                fit = actors_that_fit(res, shape)
                need = f"{shape.cpus:g} CPU" + (f" and {shape.gpus:g} GPU" if shape.gpus else "")
                have = f"{res.get('CPU', 0):g} CPU and {res.get('GPU', 0):g} GPU"
                if fit == 0 and started_here:
                    raise JobError(f"an actor needs {need} but this machine's local cluster has {have}")
                wanted = min(cfg.actors, len(tasks))
                if fit < wanted:
                    warnings.warn(
                        f"the cluster ({have} now) holds {fit} of the {wanted} actors this run starts "
                        f"({need} each); the others start if resources appear",
                        stacklevel=2,
                    )
                spec = dataclasses.replace(spec, num_threads=shape.threads, device=shape.device)
                out = run_pool(
                    spec,
                    tasks,
                    actors=cfg.actors,
                    cpus_per_actor=shape.cpus,
                    gpus_per_actor=shape.gpus,
                    on_event=event,
                    on_report=report,
                    max_attempts=cfg.max_attempts,
                )
                summary.startup_seconds = out.startup_seconds
                t0 += out.startup_seconds
                summary.lost_parts = out.lost_parts
                summary.actor_deaths = out.actor_deaths
    finally:
        bar.close()
    summary.scoring_seconds = time.perf_counter() - t0


# ----------------------------------------------------------------------------- command line


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(items: list[str] | None, what: str) -> tuple[tuple[str, object], ...]:
    out = []
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"{what} must look like key=value, got {item!r}")
        k, v = item.split("=", 1)
        out.append((k.strip(), _parse_value(v.strip())))
    return tuple(out)


def score_command(
    out: str = typer.Option(..., "--out", help="store path or fsspec URL (s3://bucket/run.zarr)"),
    dataset: str | None = typer.Option(
        None,
        help="hub name, save_to_disk folder, or local text/CSV/JSON(L)/Parquet; "
        "default: chatterbot-corpus English lines",
    ),
    config: str | None = typer.Option(None, help="dataset configuration name"),
    split: str = typer.Option("train"),
    text_column: str = typer.Option("text"),
    model: str = typer.Option("minilm", help="short name (minilm, smollm2), local path or hub name"),
    methods: str = typer.Option("value_zeroing,attention", help="comma-separated; see `vz methods`"),
    option: list[str] | None = typer.Option(None, "--option", help="method option key=value (repeatable)"),
    limit: int | None = typer.Option(DEFAULT_LIMIT, help="score the first N rows (0: all)"),
    max_length: int | None = typer.Option(None),
    layers: str | None = typer.Option(None, help="comma-separated block indices (default: all)"),
    part_size: int = typer.Option(DEFAULT_PART_SIZE),
    batch_size: int = typer.Option(8),
    actors: int = typer.Option(1, help="model replicas (0: score in this process, no Ray)"),
    device: str = typer.Option(
        "auto", help="auto (GPUs if the cluster has some now), cpu, or cuda (e.g. GPU nodes still to be scaled up)"
    ),
    gpus_per_actor: float = typer.Option(1.0, help="GPUs per actor on GPUs (0.5: two actors per GPU)"),
    cpus_per_actor: int | None = typer.Option(None),
    address: str | None = typer.Option(None, help="Ray cluster to join (default: start one on loopback)"),
    precision: str = typer.Option("float32"),
    store_dtype: str = typer.Option("float16"),
    storage_option: list[str] | None = typer.Option(
        None, "--storage-option", help="fsspec option key=value; endpoint_url goes to client_kwargs"
    ),
    overwrite: bool = typer.Option(False, help="replace a store made by another run"),
    dry_run: bool = typer.Option(False, help="print the plan and estimates, then stop"),
    progress: bool = typer.Option(True, help="show a live progress bar"),
) -> None:
    """Score a corpus into a Zarr store on Ray actors (resumable; see docs/store-layout.md)."""
    opts = dict(_pairs(storage_option, "--storage-option"))
    if "endpoint_url" in opts:
        opts.setdefault("client_kwargs", {})["endpoint_url"] = opts.pop("endpoint_url")
    cfg = JobConfig(
        out=out,
        dataset=dataset,
        config=config,
        split=split,
        text_column=text_column,
        model=model,
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        options=_pairs(option, "--option"),
        limit=limit or None,
        max_length=max_length,
        layers=tuple(int(x) for x in layers.split(",")) if layers else None,
        part_size=part_size,
        batch_size=batch_size,
        actors=actors,
        device=device,
        gpus_per_actor=gpus_per_actor,
        cpus_per_actor=cpus_per_actor,
        address=address,
        precision=precision,
        store_dtype=store_dtype,
        overwrite=overwrite,
        dry_run=dry_run,
        progress=progress,
        storage_options=opts,
    )
    try:
        summary = run_job(cfg, echo=typer.echo)
    except JobError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    except ReplicaLoadError as err:  # raised on the cluster, after the arguments were checked
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    for line in summary.plan_lines if cfg.dry_run else summary.lines():
        typer.echo(line)
    raise typer.Exit(summary.exit_code)


if __name__ == "__main__":
    sys.exit(typer.run(score_command))
