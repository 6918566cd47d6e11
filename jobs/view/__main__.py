"""`python -m jobs.view STORE ...`: the `vz view` command on its own."""

from jobs.cli.view import view_main

view_main()
