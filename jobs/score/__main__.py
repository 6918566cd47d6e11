"""`python -m jobs.score ...`: the `vz score` command as a program of its own."""

from jobs.cli import score_main

score_main()
