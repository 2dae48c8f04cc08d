"""`python -m auditor …` is the `auditor` command."""

from auditor.cli import app_main

if __name__ == "__main__":  # not when a decoding process re-imports the main module (engines/local.py)
    app_main()
