"""`vz evaluate`: the paper's evaluations of the methods, cue alignment and blank-out.

vz evaluate cue-alignment --model minilm [--methods ...] [--phenomena ana,dna] [--limit 50]
vz evaluate blank-out --model smollm2 [--removal mask|unk|delete] [--output prob|argmax|diff|cosine]
vz evaluate cue-alignment --model smollm2 --address auto --actors 4 --device cuda   # on a Ray cluster's GPUs
"""

from __future__ import annotations

from typing import Annotated

import typer

from jobs.cli.common import (
    ActorsOption,
    AddressOption,
    CpusPerActorOption,
    DeviceOption,
    GpusPerActorOption,
    fail,
    pairs,
)

__all__ = ["evaluate_app"]

evaluate_app = typer.Typer(
    help="Evaluate methods as the paper does: cue alignment and blank-out.", no_args_is_help=True
)


def _split(text: str | None) -> tuple[str, ...] | None:
    return tuple(x.strip() for x in text.split(",") if x.strip()) if text else None


def _run_evaluation(cfg) -> None:
    from cluster.connect import ClusterError
    from jobs.evaluate import run_evaluation
    from jobs.evaluate.report import cue_pivot
    from jobs.score.validate import JobError

    try:
        run = run_evaluation(cfg, log=typer.echo)
    except JobError as err:
        raise fail(str(err)) from None
    except ClusterError as err:  # a cluster that cannot be joined, or a run it cannot hold
        raise fail(str(err), err.exit_code) from None
    except RuntimeError as err:  # after the checks: a model that does not load, a unit that keeps failing
        raise fail(str(err), 1) from None
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 40, "display.precision", 3):
        summary = run.tables["summary.parquet"]
        if cfg.kind == "cue-alignment":
            typer.echo("cue share (all phenomena), method x layer:")
            typer.echo(cue_pivot(summary).to_string(index=False))
            if "accuracy.parquet" in run.tables:
                typer.echo("LM agreement accuracy:")
                typer.echo(run.tables["accuracy.parquet"].to_string(index=False))
        else:
            typer.echo("Spearman (mean ± std over examples):")
            typer.echo(summary.to_string(index=False))
    typer.echo(f"{run.units_run} unit(s) scored, {run.units_reused} reused -> {run.out}/report.md")


_MODEL_HELP = "short name (minilm, smollm2), local path, GGUF file or hub name"
_METHODS_HELP = "comma-separated (default: every method the model supports but integrated_gradients)"
_BLIMP_HELP = "BLiMP source: a folder of BLiMP JSONL files or a hub name (nyu-mll/blimp); default: the shipped copy"
_DATA_HELP = "your agreement JSONL (text, target, cues, optional good/bad) instead of BLiMP"

# The options both evaluations take.
Model = Annotated[str, typer.Option(help=_MODEL_HELP)]
Methods = Annotated[str | None, typer.Option(help=_METHODS_HELP)]
Phenomena = Annotated[str | None, typer.Option(help="comma-separated: ana,dna,dnaa,darn,rpsv (default all)")]
Limit = Annotated[int, typer.Option(help="examples per phenomenon (0: all)")]
Blimp = Annotated[str | None, typer.Option(help=_BLIMP_HELP)]
Data = Annotated[str | None, typer.Option(help=_DATA_HELP)]
Options = Annotated[list[str] | None, typer.Option("--option", help="method option key=value")]
ChunkSize = Annotated[int, typer.Option(help="examples per unit of work")]
Overwrite = Annotated[bool, typer.Option(help="rescore every unit")]


def _evaluate(kind: str, methods, phenomena, limit, option, **fields) -> None:
    """Run evaluation `kind` with the command's options: every option is an `EvalConfig` field of
    the same name, these four parsed first."""
    from jobs.evaluate import EvalConfig

    config = EvalConfig(
        kind=kind,
        methods=_split(methods),
        phenomena=_split(phenomena),
        limit=limit or None,
        options=pairs(option, "--option"),
        **fields,
    )
    _run_evaluation(config)


@evaluate_app.command("cue-alignment")
def cue_alignment_command(
    model: Model = "minilm",
    methods: Methods = None,
    phenomena: Phenomena = None,
    limit: Limit = 100,
    out: Annotated[str | None, typer.Option(help="output folder (default runs/cue-alignment-MODEL)")] = None,
    blimp: Blimp = None,
    data: Data = None,
    first_subtoken: Annotated[
        bool, typer.Option(help="mark only the cue's first sub-token (as the authors did)")
    ] = False,
    option: Options = None,
    chunk_size: ChunkSize = 16,
    address: AddressOption = None,
    actors: ActorsOption = None,
    device: DeviceOption = "auto",
    gpus_per_actor: GpusPerActorOption = 1.0,
    cpus_per_actor: CpusPerActorOption = None,
    overwrite: Overwrite = False,
) -> None:
    """Share of the target row on the cue word of number agreement, per method and layer.

    In this process by default; on Ray actors with --address or --actors N (docs/executors.md)."""
    _evaluate("cue-alignment", **locals())


@evaluate_app.command("blank-out")
def blank_out_command(
    model: Model = "minilm",
    methods: Methods = None,
    phenomena: Phenomena = None,
    limit: Limit = 100,
    removal: Annotated[str, typer.Option(help="mask (or unk where there is no mask token), unk, delete")] = "mask",
    output: Annotated[
        str, typer.Option(help="auto (prob with an LM head, else cosine), prob, argmax, diff (gold - foil), cosine")
    ] = "auto",
    out: Annotated[str | None, typer.Option(help="output folder (default runs/blank-out-MODEL)")] = None,
    blimp: Blimp = None,
    data: Data = None,
    option: Options = None,
    chunk_size: ChunkSize = 16,
    address: AddressOption = None,
    actors: ActorsOption = None,
    device: DeviceOption = "auto",
    gpus_per_actor: GpusPerActorOption = 1.0,
    cpus_per_actor: CpusPerActorOption = None,
    overwrite: Overwrite = False,
) -> None:
    """Spearman correlation of each method's target row with the prediction's change when a token is removed.

    In this process by default; on Ray actors with --address or --actors N (docs/executors.md)."""
    _evaluate("blank-out", **locals())
