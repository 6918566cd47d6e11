"""Where work runs: executors (in this process, or on Ray), choosing one (`cluster.where`),
connecting to or starting a Ray cluster, placing actors on it, and giving workers their secrets
through their environment. The only package that imports Ray; it knows nothing of scoring.

`cluster.ray_executor` imports Ray at module top: import it only where Ray is wanted.
"""

from cluster.executor import (
    Died,
    Event,
    Executor,
    InProcessExecutor,
    Lost,
    Progress,
    Ready,
    ReplicaError,
    RunReport,
    Started,
    Unit,
    Waiting,
)
from cluster.where import Placement, Where, open_executor

__all__ = [
    "Died",
    "Event",
    "Executor",
    "InProcessExecutor",
    "Lost",
    "Placement",
    "Progress",
    "Ready",
    "ReplicaError",
    "RunReport",
    "Started",
    "Unit",
    "Waiting",
    "Where",
    "open_executor",
]
