"""The paper's evaluations at corpus scale (`vz evaluate cue-alignment|blank-out`): `driver` plans
chunks and runs them through an executor, `step` scores one chunk on a worker, `report` writes
the tables and figures."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["EvalConfig", "run_evaluation"]

if TYPE_CHECKING:
    from jobs.evaluate.driver import EvalConfig, run_evaluation


def __getattr__(name: str) -> Any:
    # The job's entry points load on first use: `import jobs.evaluate.config` (the command line does, for
    # every command) does not load the driver, torch or Ray.
    if name in __all__:
        return getattr(importlib.import_module("jobs.evaluate.driver"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
