"""Run the CLI in-process (one TensorFlow import per test session) and read what it wrote."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from auditor.cli import app

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str
    report: dict | None


def run_cli(*args: str, out: Path | None = None) -> CliResult:
    runner = CliRunner()
    argv = [str(a) for a in args]
    if out is not None:
        argv += ["--out", str(out)]
    result = runner.invoke(app, argv, catch_exceptions=False)
    report_path = out / "report.json" if out is not None else None
    report = json.loads(report_path.read_text()) if report_path and report_path.exists() else None
    return CliResult(result.exit_code, result.stdout, result.stderr, report)


def check(report: dict, check_id: str) -> dict:
    return next(c for c in report["checks"] if c["id"] == check_id)
