"""Where work runs: executors (in this process, or on Ray), connecting to or starting a Ray
cluster, and placing actors on it. The only package that imports Ray; it knows nothing of scoring.

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

__all__ = [
    "Died",
    "Event",
    "Executor",
    "InProcessExecutor",
    "Lost",
    "Progress",
    "Ready",
    "ReplicaError",
    "RunReport",
    "Started",
    "Unit",
    "Waiting",
]
