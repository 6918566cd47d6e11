"""`vz cache list | clear`: the cache of joined GGUF files and de-quantised weights (vzcore.checkpoints)."""

from __future__ import annotations

import typer

__all__ = ["cache_app"]

cache_app = typer.Typer(help="The cache of real checkpoints: joined GGUF files and de-quantised weights.")


def _mb(size: int) -> str:
    return f"{size / 2**20:,.0f} MB"


@cache_app.command("list")
def list_command() -> None:
    """List each cached file or model folder with its size (and the GGUF file it came from)."""
    from vzcore.checkpoints import cache_dir, cache_entries

    entries = cache_entries()
    typer.echo(f"{cache_dir()}: {len(entries)} entries, {_mb(sum(size for _, size in entries))}")
    for path, size in entries:
        source = path / "SOURCE"
        origin = f"  (from {source.read_text().strip()})" if source.exists() else ""
        typer.echo(f"{_mb(size):>10s}  {path.parent.name}/{path.name}{origin}")


@cache_app.command("clear")
def clear_command() -> None:
    """Remove every cached file and folder (the next load of a GGUF checkpoint takes minutes again)."""
    from vzcore.checkpoints import cache_dir, clear_cache

    typer.echo(f"freed {_mb(clear_cache())} in {cache_dir()}")
