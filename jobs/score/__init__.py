"""The corpus scoring job (`python -m jobs.score`, `vz score`): `driver` plans parts, runs them
through an executor and summarises; `step` scores one part on a worker; `config`, `validate`,
`identity`, `data`, `plan`, `lease`, `summary` are its config, checks, hashes, input rows, part
plan, one-writer lease and report."""

from jobs.score.driver import JobError, JobInterrupted, JobStopped, ModelLoadError, Summary, run_job

__all__ = ["JobError", "JobInterrupted", "JobStopped", "ModelLoadError", "Summary", "run_job"]
