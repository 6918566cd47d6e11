"""Aggregation of a store into corpus statistics (`python -m jobs.aggregate`, `vz aggregate`):
`driver` reads the done parts through an executor and reduces them (the statistics are
`vzcore.statistics`); `out` is the output folder's safety and atomic publication; `report` and
`plots` write the tables, report.md and the PNGs."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["AggregateConfig", "aggregate", "default_out"]

if TYPE_CHECKING:
    from jobs.aggregate.driver import AggregateConfig, aggregate, default_out


def __getattr__(name: str) -> Any:
    # The job's entry points load on first use: `import jobs.aggregate.config` (the command line does, for
    # every command) does not load the driver, torch or Ray.
    if name in __all__:
        return getattr(importlib.import_module("jobs.aggregate.driver"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
