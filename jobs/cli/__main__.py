"""`python -m jobs.cli ...`: the `vz` command."""

from jobs.cli import main

main()
