"""Statistics of context-mixing maps, defined once: which rows count and what they give (`rows`),
corpus sums that merge by addition (`partial`), and those sums for a block of examples at once
(`block`). Pure NumPy; `vz aggregate` (jobs) and the corpus queries (`vzcore.queries`) both use them.
"""

from vzcore.statistics.block import ExampleBlock, add_block
from vzcore.statistics.partial import DEFAULT_BUCKET_EDGES, PartialStats, StatsSpec, is_punctuation
from vzcore.statistics.rows import (
    MIN_ROW_ENTRIES,
    counted_rows,
    example_masses,
    row_masses,
    scored_rows,
)
from vzcore.statistics.top import TOP_STATISTICS, TopExamples

__all__ = [
    "DEFAULT_BUCKET_EDGES",
    "MIN_ROW_ENTRIES",
    "TOP_STATISTICS",
    "ExampleBlock",
    "PartialStats",
    "StatsSpec",
    "TopExamples",
    "add_block",
    "counted_rows",
    "example_masses",
    "is_punctuation",
    "row_masses",
    "scored_rows",
]
