"""The paper's evaluations at corpus scale (`vz evaluate cue-alignment|blank-out`): `driver` plans
chunks and runs them through an executor, `step` scores one chunk on a worker, `report` writes
the tables and figures."""

from jobs.evaluate.driver import EvalConfig, run_evaluation

__all__ = ["EvalConfig", "run_evaluation"]
