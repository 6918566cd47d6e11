"""`vz score`: score a corpus (or encoder-decoder pairs, or audio) into a Zarr store (`jobs.score`)."""

from __future__ import annotations

import typer

from jobs.cli.common import (
    ActorsOption,
    AddressOption,
    CpusPerActorOption,
    DeviceOption,
    GpusPerActorOption,
    StorageOption,
    fail,
    pairs,
    storage_options,
)
from jobs.score.config import DEFAULT_LIMIT, DEFAULT_PART_MB, JobConfig

__all__ = ["score_command"]


def score_command(
    out: str = typer.Option(..., "--out", help="store path or fsspec URL (s3://bucket/run.zarr)"),
    dataset: str | None = typer.Option(
        None,
        help="hub name, save_to_disk folder, or local text/CSV/JSON(L)/Parquet; "
        "default: chatterbot-corpus English lines",
    ),
    config: str | None = typer.Option(None, help="dataset configuration name"),
    split: str = typer.Option("train", help="hub datasets and saved DatasetDicts (plain files are one split: train)"),
    text_column: str = typer.Option("text", help="the column to score; a nested field as doc.text"),
    source_column: str | None = typer.Option(
        None, help="encoder-decoders: the source column (text; audio: a datasets Audio column or file names)"
    ),
    target_column: str | None = typer.Option(
        None, help="encoder-decoders: the target column, decoded by force (absent or null: greedy decoding)"
    ),
    sites: str | None = typer.Option(None, help="encoder-decoders: encoder,decoder,cross (default: all three)"),
    max_new_tokens: int = typer.Option(64, help="encoder-decoders: greedy decoding stops after this many tokens"),
    site_layers: list[str] | None = typer.Option(
        None, "--site-layers", help="encoder-decoders: a site's layers, e.g. encoder=-1 (repeatable; others: --layers)"
    ),
    data_format: str | None = typer.Option(
        None, "--format", help="read local files as text, csv, json or parquet (default: from the extension)"
    ),
    model: str = typer.Option("minilm", help="short name (minilm, smollm2), local path or hub name"),
    methods: str = typer.Option("value_zeroing,attention", help="comma-separated; see `vz methods`"),
    option: list[str] | None = typer.Option(None, "--option", help="method option key=value (repeatable)"),
    limit: int | None = typer.Option(DEFAULT_LIMIT, help="score the first N rows (0: all)"),
    max_length: int | None = typer.Option(None),
    layers: str | None = typer.Option(None, help="comma-separated block indices (default: all)"),
    part_mb: float = typer.Option(
        DEFAULT_PART_MB,
        help="a part (the unit of work and resume) holds at most this many MiB of float16 maps per method",
    ),
    part_size: int | None = typer.Option(
        None, help="and at most this many examples (default: a short run is cut into 8 parts)"
    ),
    batch_size: int = typer.Option(8),
    actors: ActorsOption = None,
    device: DeviceOption = "auto",
    gpus_per_actor: GpusPerActorOption = 1.0,
    cpus_per_actor: CpusPerActorOption = None,
    address: AddressOption = None,
    precision: str = typer.Option("float32", help="float32, bfloat16, or tf32 (CUDA only)"),
    store_dtype: str = typer.Option("float16", help="float16 or float32"),
    store: str = typer.Option(
        "dense",
        help="dense, top-k=K,threshold=T, auto (top-8 >= 0.005 above 1024 tokens), or words (maps pooled to words)",
    ),
    targets: str = typer.Option("all", help="rows to score and store: all, last (plain token), mask, column=NAME"),
    storage_option: StorageOption = None,
    overwrite: bool = typer.Option(False, help="replace a store made by another run"),
    break_lock: bool = typer.Option(False, help="take over the store from a run that is gone (see its lease)"),
    dry_run: bool = typer.Option(False, help="print the plan and estimates, then stop"),
    progress: bool = typer.Option(True, help="show a live progress bar"),
) -> None:
    """Score a corpus into a Zarr store on Ray actors (resumable; see docs/store-layout.md).

    By default on a Ray cluster started here on loopback.
    On CPUs: one single-threaded actor per core, no more copies of the model than the memory holds.
    (--cpus-per-actor N: N threads each; --actors N: N actors sharing the CPUs.)
    On GPUs: one actor, which writes a part while it scores the next.
    --actors 0 scores in this process,
    --address joins a running cluster (docs/executors.md).
    """
    from jobs.score import JobError, JobInterrupted, JobStopped, ModelLoadError, run_job

    opts = storage_options(storage_option)
    try:
        layer_list = tuple(int(x) for x in layers.split(",")) if layers else None
    except ValueError:
        raise fail(f"--layers must be comma-separated block indices such as 0,3,5, not {layers!r}") from None
    per_site = []
    for given in site_layers or []:
        site_name, _, blocks = given.partition("=")
        try:
            per_site.append((site_name.strip(), tuple(int(x) for x in blocks.split(","))))
        except ValueError:
            raise fail(f"--site-layers takes SITE=BLOCKS such as encoder=-1 or cross=0,3, not {given!r}") from None
    cfg = JobConfig(
        out=out,
        dataset=dataset,
        config=config,
        split=split,
        text_column=text_column,
        source_column=source_column,
        target_column=target_column,
        sites=tuple(s.strip() for s in sites.split(",") if s.strip()) if sites is not None else None,
        max_new_tokens=max_new_tokens,
        site_layers=tuple(per_site),
        format=data_format,
        model=model,
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        options=pairs(option, "--option"),
        limit=limit or None,
        max_length=max_length,
        layers=layer_list,
        part_mb=part_mb,
        part_size=part_size,
        batch_size=batch_size,
        actors=actors,
        device=device,
        gpus_per_actor=gpus_per_actor,
        cpus_per_actor=cpus_per_actor,
        address=address,
        precision=precision,
        store_dtype=store_dtype,
        store_form=store,
        targets=targets,
        overwrite=overwrite,
        break_lock=break_lock,
        dry_run=dry_run,
        progress=progress,
        storage_options=opts,
    )
    try:
        summary = run_job(cfg)
    except JobError as err:
        raise fail(str(err)) from None
    except (ModelLoadError, JobStopped) as err:  # raised by a worker, after the arguments were checked
        raise fail(str(err), 1) from None
    except JobInterrupted as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(err.exit_code) from None
    for line in summary.plan_lines if cfg.dry_run else summary.lines():
        typer.echo(line)
    raise typer.Exit(summary.exit_code)
