"""The `vz` command: `app` parses and calls the jobs and the library (`query` and `evaluate`
commands in their own modules, shared options in `common`); `entry` ends every command that lets
an error through in one line."""

from jobs.cli.app import aggregate_main, app, evaluate_main, main, score_main

__all__ = ["aggregate_main", "app", "evaluate_main", "main", "score_main"]
