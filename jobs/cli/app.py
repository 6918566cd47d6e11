"""The `vz` command line: it parses arguments, then calls the library (`vzcore`) and the jobs.

    vz methods | vz families | vz cache list | vz cache clear
    vz explain "Many teenagers were helping [MASK]." --layer 5 --words --out map.png
    vz score --out runs/chatterbot.zarr [--methods ...] [--actors 2] [--address ADDR] [--device cuda]
    vz show runs/chatterbot.zarr --example 3 --words --out example.png
    vz aggregate runs/chatterbot.zarr [--address ADDR | --actors N]
    vz query rows runs/chatterbot.zarr --word it --layer 4 [--sources token] [--out rows.parquet]
    vz query top runs/chatterbot.zarr --statistic word_mass --word it --layer 4 -k 10
    vz evaluate cue-alignment --model minilm [--methods ...] [--phenomena ana,dna] [--limit 50]
    vz view runs/chatterbot.zarr [--port 8765] [--aggregate DIR] | --build site/
    vz evaluate blank-out --model smollm2 [--removal mask|unk|delete] [--output prob|argmax|diff|cosine]

Bad arguments exit 2 with one line naming the choices, before any model weights load. Where the
work runs is said by the same options in score, aggregate and evaluate (`jobs.cli.common`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from jobs.cli.cache import cache_app
from jobs.cli.common import (
    ActorsOption,
    AddressOption,
    CpusPerActorOption,
    DeviceOption,
    GpusPerActorOption,
    StorageOption,
    check_image_out,
    fail,
    storage_options,
)
from jobs.cli.evaluate import evaluate_app
from jobs.cli.query import query_app
from jobs.cli.score import score_command
from jobs.cli.view import view_command

__all__ = ["aggregate_main", "app", "main", "score_main"]

# No rich tracebacks: an unexpected error is one line, its traceback kept in a file (`jobs.cli.entry`).
app = typer.Typer(
    help="Value Zeroing and context-mixing scores for Transformers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(query_app, name="query")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(cache_app, name="cache")
app.command("view")(view_command)


@app.command("methods")
def methods_command() -> None:
    """List the registered scoring methods."""
    from vzcore import list_methods

    for name, doc in list_methods().items():
        typer.echo(f"{name:24s} {doc}")


@app.command("families")
def families_command() -> None:
    """List the supported families: their model types, the fast path their blocks take, and the
    methods that apply to them (asked of the method registry)."""
    from vzcore import list_methods
    from vzcore.families import family_specs
    from vzcore.families.encdec import SITE_NAMES, encdec_specs
    from vzcore.methods import get_method
    from vzcore.ops.paths import zeroing_path
    from vzcore.ops.sites import site_path
    from vzcore.seq2seq import SEQ2SEQ_METHODS

    names = list(list_methods())
    for family in family_specs():
        layout = family.shape.layout
        if layout is None:
            path = "no fast path: " + "; ".join(family.shape.unsupported())
        else:
            path = f"{layout} blocks, {zeroing_path(family)} fast path"
        apply = [m for m in names if get_method(m).supports(family)]
        typer.echo(f"{family.name} ({path}): {', '.join(family.model_types)}")
        typer.echo(f"  methods: {', '.join(apply)}")
        if len(apply) < len(names):
            typer.echo(f"  not: {', '.join(m for m in names if m not in apply)}")
    for spec in encdec_specs():  # scored by vzcore.seq2seq.score_pairs, per site
        paths = ", ".join(f"{site} {site_path(spec, site)}" for site in SITE_NAMES)
        typer.echo(f"{spec.name} (encoder-decoder; fast paths: {paths}): {', '.join(spec.model_types)}")
        typer.echo(f"  methods: {', '.join(SEQ2SEQ_METHODS)} (vzcore.seq2seq.score_pairs)")
        typer.echo(f"  not: {', '.join(m for m in names if m not in SEQ2SEQ_METHODS)}")


@app.command("explain")
def explain_command(
    text: Annotated[str, typer.Argument(help="the text to score")],
    model: Annotated[
        str, typer.Option(help="short name (minilm, smollm2), local path, GGUF file or hub name")
    ] = "minilm",
    method: Annotated[list[str] | None, typer.Option(help="method (repeatable); see `vz methods`")] = None,
    layer: Annotated[
        list[int] | None, typer.Option(help="block index (repeatable, negatives from the end); default all")
    ] = None,
    target: Annotated[
        list[int] | None,
        typer.Option(help="target row to score (repeatable, negatives from the end); gradient methods need one"),
    ] = None,
    words: Annotated[bool, typer.Option(help="group sub-tokens into words")] = False,
    top: Annotated[int, typer.Option(help="strongest sources printed per token")] = 3,
    out: Annotated[
        Path, typer.Option(help="where to write the heatmap (png, pdf, svg, ...: an existing folder)")
    ] = Path("vz_explain.png"),
    device: Annotated[str | None, typer.Option(help="torch device, e.g. cuda")] = None,
) -> None:
    """Score TEXT and print each token's strongest sources; write a labelled heatmap."""
    import vzcore
    from vzcore.explain import strongest_sources
    from vzcore.inputs import check_tokenizer, text_problem
    from vzcore.maps import resolve_layers
    from vzcore.methods.registry import check_applicable
    from vzcore.plot import result_figure

    methods = method or ["value_zeroing"]
    check_image_out(out)
    try:  # every check before the weights load
        problem = text_problem(text)
        if problem is not None:
            raise ValueError(f"nothing to explain: {problem}")
        chosen = [vzcore.methods.get_method(m) for m in methods]
        if device is not None and device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"--device {device}: torch sees no CUDA GPU here; leave --device out to use the CPU")
        located = vzcore.locate_model(model)
        check_applicable(chosen, located.family, targets_given=True, model=model)
        need = [m.name for m in chosen if m.needs_targets]
        if need and not target:  # the library's message names its `targets=` argument, not this option
            raise ValueError(
                f"{', '.join(need)} score target rows only (one backward pass per target): pass --target POS "
                "(repeatable, negatives from the end), e.g. --target -1 or the [MASK] position"
            )
        resolve_layers(layer, located.geometry.num_layers)
        tokenizer = located.load_tokenizer()
        check_tokenizer(tokenizer, f"model {model!r}")
    except (vzcore.UnknownMethodError, vzcore.UnsupportedModelError, ModuleNotFoundError, ValueError) as err:
        raise fail(str(err)) from None
    handle = vzcore.load_model(model, device=device, tokenizer=tokenizer)  # the checked one: not read twice
    result = vzcore.score(handle, [text], methods=methods, layers=layer, targets=target)[0]
    view = result.word_level() if words else result
    labels = view.words if words else view.labels
    for m in methods:
        for k, block in enumerate(result.layers):
            typer.echo(f"{m}, layer {block} ([target] <- strongest sources):")
            for line in strongest_sources(view.scores[m][k], labels, top):
                typer.echo(line)
    fig = result_figure(result, methods=methods, words=words, title=f"{handle.name}: {text}")
    fig.savefig(out, dpi=110)
    typer.echo(f"heatmap written to {out}")


@app.command("show")
def show_command(
    store: Annotated[str, typer.Argument(help="store path or fsspec URL")],
    example: Annotated[int, typer.Option("--example", help="example id (dataset row)")],
    method: Annotated[
        list[str] | None, typer.Option("--method", help="method to draw (repeatable; default all)")
    ] = None,
    layer: Annotated[int | None, typer.Option(help="block index (default: the last stored layer)")] = None,
    words: Annotated[bool, typer.Option("--words", help="word-level maps instead of tokens")] = False,
    site: Annotated[
        str | None, typer.Option(help="encoder-decoder stores: encoder, decoder or cross (default: every site)")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="image to write: png, pdf, svg, ... in an existing folder (default example_ID.png)"),
    ] = None,
    storage_option: StorageOption = None,
) -> None:
    """Draw one example's maps (a heatmap per --method, all by default) at --layer (default: last).

    An encoder-decoder's store: a heatmap per site and method (--site: one site)."""
    from vzcore.queries import show_example
    from vzcore.store import StoreError
    from vzcore.store.reader import open_store

    out = out or Path(f"example_{example}.png")
    check_image_out(out)
    try:
        opened = open_store(store, storage_options(storage_option))
        if words and site == "encoder" and opened.info.audio:  # its columns are frames: nothing to group
            raise fail(
                f"--words: the encoder site of {store} runs over audio frames, not words; leave --words out,"
                " or draw the decoder's words with --site decoder"
            )
        fig = show_example(opened, example, method or None, layer, words, site)
    except StoreError as err:
        raise fail(str(err)) from err
    fig.savefig(out, dpi=120)
    typer.echo(f"wrote {out}")


app.command("score")(score_command)  # in the order `vz --help` lists them


@app.command("aggregate")
def aggregate_command(
    store: Annotated[str, typer.Argument(help="store path or fsspec URL")],
    out: Annotated[
        str | None,
        typer.Option(help="folder or fsspec URL: new, empty, or this store's aggregate (default STORE.aggregate)"),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="replace another store's aggregate (never a folder of other files)")
    ] = False,
    top_types: int = 200,
    top_examples: Annotated[
        int, typer.Option(help="highest examples kept per statistic, method and layer (the viewer's top-k; 0: none)")
    ] = 1000,
    agreement_every: Annotated[
        int, typer.Option(min=1, help="rank about one row in N for agreement, drawn by a hash (1: every row, exact)")
    ] = 1,
    plots: bool = True,
    storage_option: StorageOption = None,
    address: AddressOption = None,
    actors: ActorsOption = None,
    device: DeviceOption = "auto",
    gpus_per_actor: GpusPerActorOption = 1.0,
    cpus_per_actor: CpusPerActorOption = None,
) -> None:
    """Aggregate a store into Parquet tables, PNG plots and report.md.

    In this process by default; as Ray tasks with --address (as many at once as the cluster's CPUs
    hold, --cpus-per-actor each) or --actors N (N at once; a local cluster without --address).
    Aggregation runs on CPUs: --device and --gpus-per-actor are checked but not used.
    """
    from cluster.where import Where
    from jobs.aggregate import AggregateConfig, aggregate, default_out
    from jobs.aggregate.out import OutputError
    from vzcore.store import StoreError

    if top_examples < 0:
        raise fail(f"--top-examples must be 0 or more, not {top_examples}")
    where = Where.given(
        actors=actors,
        address=address,
        in_process=True,
        device=device,
        gpus_per_actor=gpus_per_actor,
        cpus_per_actor=cpus_per_actor,
    )
    try:
        where.check()
    except ValueError as err:
        raise fail(str(err)) from None
    try:
        summary = aggregate(
            store,
            out,
            where=where,
            overwrite=overwrite,
            config=AggregateConfig(
                top_types=top_types, top_examples=top_examples, agreement_every=agreement_every, plots=plots
            ),
            storage_options=storage_options(storage_option),
            log=typer.echo,
        )
    except (StoreError, OutputError) as err:
        raise fail(str(err)) from err
    typer.echo(
        f"aggregated {', '.join(f'{v} {k}' for k, v in summary['examples'].items())} examples"
        f" from {len(summary['parts_used'])} part{'' if len(summary['parts_used']) == 1 else 's'}"
        f" in {summary['aggregate_seconds']:.1f}s -> {out or default_out(store)}/report.md"
    )


@app.command("verify")
def verify_command(
    store: Annotated[str, typer.Argument(help="store path or fsspec URL")],
    repair: Annotated[bool, typer.Option(help="unmark broken parts so that the next `vz score` rewrites them")] = False,
    storage_option: StorageOption = None,
) -> None:
    """Read back every part the store claims complete; report the broken ones (exit 1 if any)."""
    from contextlib import nullcontext

    from jobs.score.lease import hold_lease
    from jobs.score.validate import JobError
    from vzcore.store import Location, StoreError
    from vzcore.store.reader import open_store
    from vzcore.store.verify import verify_store

    opts = storage_options(storage_option)
    try:
        with hold_lease(Location(store, opts)) if repair else nullcontext():  # repairing writes: one writer
            broken = verify_store(store, opts, repair=repair)
    except (StoreError, JobError) as err:
        raise fail(str(err)) from err
    parts = [b for b in broken if not b.index_only]
    for b in broken:
        typer.echo(f"{'index wrong about part' if b.index_only else 'broken part'} {b.part}: {b.problem}")
    if not broken:
        opened = open_store(store, opts)
        done, planned = len(opened.done_parts()), len(opened.parts)
        more = "" if done == planned else f"; {planned - done} not complete yet: `vz score` finishes them"
        typer.echo(f"{store}: every complete part reads back whole ({done} of {planned} parts complete{more})")
    elif repair:
        typer.echo(
            f"unmarked {len(parts)} part(s) and rebuilt the completion index from the parts:"
            " rerun the same `vz score` command to rewrite them"
        )
    else:
        typer.echo(f"{len(broken)} problem(s): `vz verify {store} --repair`, then rerun `vz score`")
    raise typer.Exit(1 if broken and not repair else 0)


def main() -> None:
    """The `vz` command (`[project.scripts]`): what a command lets through is said in one line."""
    from jobs.cli.entry import run_cli

    run_cli(app)


def _alone(command: Callable[..., None]) -> None:
    """Run one command as a program of its own (`python -m jobs.score`), ending as `main` does."""
    from jobs.cli.entry import run_cli

    one = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    one.command()(command)
    run_cli(one)


def score_main() -> None:
    """`python -m jobs.score ...`: the `vz score` command on its own."""
    _alone(score_command)


def aggregate_main() -> None:
    """`python -m jobs.aggregate ...`: the `vz aggregate` command on its own."""
    _alone(aggregate_command)


def evaluate_main() -> None:
    """`python -m jobs.evaluate cue-alignment|blank-out ...`: the `vz evaluate` commands on their own."""
    from jobs.cli.entry import run_cli

    run_cli(evaluate_app)
