"""What goes wrong when reading a store."""

from __future__ import annotations

__all__ = ["ExampleNotScoredError", "StoreError"]


class StoreError(Exception):
    """The store is missing, unreadable, from another layout, or lacks what was asked for."""


class ExampleNotScoredError(StoreError):
    """The example exists but has no maps (failed, skipped, or its part is not done)."""
