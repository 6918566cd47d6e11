"""The `vz` command line: parses arguments, then calls the library and the jobs."""

from __future__ import annotations

import typer

app = typer.Typer(help="Value Zeroing and context-mixing scores for Transformers.", no_args_is_help=True)


@app.command("methods")
def methods_command() -> None:
    """List the registered scoring methods."""
    from vzcore import list_methods

    for name, doc in list_methods().items():
        typer.echo(f"{name:24s} {doc}")


@app.command("families")
def families_command() -> None:
    """List the supported architecture families and their model types."""
    from vzcore import list_families

    for name, types in list_families().items():
        typer.echo(f"{name:8s} {', '.join(types)}")


# Commands defined in their own modules register here, one line each.
from vzcore.explain import explain_command  # noqa: E402  (typer and numpy only at import)

app.command("explain")(explain_command)
from jobs.aggregate import aggregate_command  # noqa: E402  (numpy only at import)
from vzcore.store.query import show_command  # noqa: E402  (no zarr at import)

app.command("aggregate")(aggregate_command)
app.command("show")(show_command)
from jobs.score import score_command as jobs_score_command  # noqa: E402  (typer only; Ray loads when scoring)

app.command("score")(jobs_score_command)


if __name__ == "__main__":
    app()
