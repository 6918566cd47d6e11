"""`python -m jobs.evaluate cue-alignment|blank-out ...`: the `vz evaluate` commands as a program of their own."""

from jobs.cli import evaluate_main

evaluate_main()
