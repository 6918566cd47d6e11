"""What the `vz` commands share: failing with exit 2 and one line, `key=value` options, the
`--storage-option` that every command opening a store takes, and the options that say where a
command's work runs (`vz score`, `vz aggregate`, `vz evaluate`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "ActorsOption",
    "AddressOption",
    "CpusPerActorOption",
    "DeviceOption",
    "GpusPerActorOption",
    "StorageOption",
    "check_image_out",
    "fail",
    "pairs",
    "parse_value",
    "storage_options",
]

# One definition for every command that opens a store (score, verify, show, query, aggregate).
StorageOption = Annotated[
    list[str] | None,
    typer.Option(
        "--storage-option",
        help="fsspec option key=value for a store URL (repeatable): key=, secret=, endpoint_url= (goes to the"
        " S3 client); without them s3fs reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL",
    ),
]

# Where the work runs (`cluster.where.Where`): one definition for score, aggregate and evaluate. Each
# command sets its own default for --actors and says it in its help.
ActorsOption = Annotated[
    int | None,
    typer.Option(
        "--actors",
        help="Ray workers: actors holding a model replica (vz aggregate: tasks at once); 0: in this process, no Ray",
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Ray cluster to join: HOST:PORT (the head's GCS port) or auto (RAY_ADDRESS); local: start one on loopback",
    ),
]
DeviceOption = Annotated[
    str,
    typer.Option(
        "--device", help="auto (GPUs if the cluster has some now), cpu, or cuda (e.g. GPU nodes still to be scaled up)"
    ),
]
GpusPerActorOption = Annotated[
    float, typer.Option("--gpus-per-actor", help="GPUs per actor on GPUs (0.5: two actors per GPU)")
]
CpusPerActorOption = Annotated[
    int | None,
    typer.Option(
        "--cpus-per-actor",
        help="CPUs per actor, its torch threads on CPUs (default: 1, an actor per core; with --actors N: the CPUs"
        " divided among them)",
    ),
]


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def check_image_out(out: Path, option: str = "--out") -> None:
    """Refuse (exit 2, one line) an image path matplotlib cannot write: checked before any model
    loads or store opens, so a long draw never ends in a failed save (`vz explain`, `vz show`)."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    suffix = out.suffix.lower().removeprefix(".")
    if suffix not in formats:
        given = f"its suffix {out.suffix!r}" if out.suffix else "it has no suffix"
        raise fail(f"{option} {out}: {given} is not an image format matplotlib writes; use one of {', '.join(formats)}")
    parent = out.parent
    if not parent.is_dir():
        raise fail(f"{option} {out}: no such folder {parent}; create it first")


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def pairs(items: list[str] | None, what: str) -> tuple[tuple[str, object], ...]:
    out = []
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"{what} must look like key=value, got {item!r}")
        k, v = item.split("=", 1)
        out.append((k.strip(), parse_value(v.strip())))
    return tuple(out)


def storage_options(items: list[str] | None) -> dict:
    opts = dict(pairs(items, "--storage-option"))
    if "endpoint_url" in opts:
        opts.setdefault("client_kwargs", {})["endpoint_url"] = opts.pop("endpoint_url")
    return opts
