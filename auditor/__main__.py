"""`python -m auditor …` is the `auditor` command."""

from auditor.cli import app_main

app_main()
