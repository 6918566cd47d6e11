"""What users run, one package a job: `score` (a corpus into a store), `aggregate` (a store into
corpus statistics), `evaluate` (the paper's evaluations), and `cli` (the `vz` command over them).
Each job runs as `python -m jobs.score|aggregate|evaluate` too; where it runs is `cluster`'s choice."""
