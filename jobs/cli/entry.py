"""How the `vz` commands end on an error they did not handle themselves: one line on stderr, never a
multi-screen traceback. A cluster that cannot be joined or started says what was tried and what to
do (exit 2, or 1 when this machine was too busy); anything unexpected names the error and the file
that keeps its full traceback, in the user's private folder (exit 1)."""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable

from cluster.rayinit import ClusterError
from cluster.userdir import UnsafeFolderError, private_dir
from jobs.cli.common import fail

__all__ = ["run_cli"]


def run_cli(command: Callable[[], object]) -> None:
    """Run a typer app (or any command line) and turn the errors it lets through into one line."""
    try:
        command()
    except (ClusterError, UnsafeFolderError) as err:
        sys.exit(fail(str(err), getattr(err, "exit_code", 2)).exit_code)
    except Exception as err:
        sys.exit(fail(_unexpected(err), 1).exit_code)


def _unexpected(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    what = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    try:
        path = _save_traceback(err)
    except (OSError, UnsafeFolderError) as why:
        traceback.print_exception(err)  # nowhere else to keep it
        return f"unexpected {what} (traceback above: it could not be saved, {why})"
    return f"unexpected {what} (the full traceback is in {path})"


def _save_traceback(err: BaseException) -> str:
    """Write `err`'s full traceback to a new file of the user's private folder; return its path.

    Not the command line: it may hold storage credentials (`--storage-option secret=...`)."""
    path = private_dir("logs") / f"vz-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(traceback.format_exception(err)))
    return str(path)
