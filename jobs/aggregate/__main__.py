"""`python -m jobs.aggregate ...`: the `vz aggregate` command as a program of its own."""

from jobs.cli import aggregate_main

aggregate_main()
