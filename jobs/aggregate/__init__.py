"""Aggregation of a store into corpus statistics (`python -m jobs.aggregate`, `vz aggregate`):
`driver` reads the done parts through an executor and reduces them (the statistics are
`vzcore.statistics`); `out` is the output folder's safety and atomic publication; `report` and
`plots` write the tables, report.md and the PNGs."""

from jobs.aggregate.driver import AggregateConfig, aggregate, default_out

__all__ = ["AggregateConfig", "aggregate", "default_out"]
