"""The corpus scoring job (`python -m jobs.score`, `vz score`): `driver` plans parts, runs them
through an executor and summarises; `step` scores one part on a worker; `config`, `validate`,
`identity`, `data`, `plan`, `lease`, `summary` are its config, checks, hashes, input rows, part
plan, one-writer lease and report."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["JobError", "JobInterrupted", "JobStopped", "ModelLoadError", "Summary", "run_job"]

if TYPE_CHECKING:
    from jobs.score.driver import JobError, JobInterrupted, JobStopped, ModelLoadError, Summary, run_job


def __getattr__(name: str) -> Any:
    # The job's entry points load on first use: `import jobs.score.config` (the command line does, for
    # every command) does not load the driver, torch or Ray.
    if name in __all__:
        return getattr(importlib.import_module("jobs.score.driver"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
