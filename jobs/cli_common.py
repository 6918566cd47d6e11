"""What the `vz` commands share: failing with exit 2 and one line, and `key=value` options."""

from __future__ import annotations

import json

import typer

__all__ = ["fail", "pairs", "parse_value", "storage_options"]


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


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
