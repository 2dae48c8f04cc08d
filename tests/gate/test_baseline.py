"""Baselines: accepted findings cannot fail the gate; new ones still do; the file round-trips."""

from __future__ import annotations

import json

import pytest

from auditor.gate.baseline import accept_findings, apply_statuses, load_baseline, write_baseline
from auditor.errors import ConfigError
from auditor.report import CheckResult, Finding, Report, Severity, Status


def _finding(fid: str) -> Finding:
    return Finding(id=fid, severity=Severity.ERROR, message=f"leak {fid}", paths=[f"val/{fid}.jpg", f"train/{fid}.jpg"])


def _report(*ids: str) -> Report:
    check = CheckResult("leakage", Status.FAIL, "1 % leak (policy: fail above 0 %)", findings=[_finding(i) for i in ids])
    return Report(tool_version="0", dataset={}, backbone={}, checks=[check])


def test_round_trip_and_all_accepted_passes(tmp_path):
    path = tmp_path / "baseline.json"
    write_baseline(_report("leakage:group:b", "leakage:group:a"), path)
    data = json.loads(path.read_text())
    assert [e["id"] for e in data["findings"]] == ["leakage:group:a", "leakage:group:b"]  # sorted: clean diffs
    ids = load_baseline(path)
    report = _report("leakage:group:a", "leakage:group:b")
    assert accept_findings(report.checks, lambda f: "baseline" if f.id in ids else None) == 2
    check = report.checks[0]
    assert check.status == Status.PASS and not report.failed
    assert check.metrics["gate"] == {"accepted": 2, "new": 0, "accepted_by": {"baseline": 2}, "status_before": "fail"}
    assert all(f.evidence["accepted"] == "baseline" for f in check.findings)


def test_a_new_finding_still_fails():
    report = _report("leakage:group:a", "leakage:group:new")
    accept_findings(report.checks, lambda f: "baseline" if f.id == "leakage:group:a" else None)
    assert report.checks[0].status == Status.FAIL
    assert "1 new, 1 accepted (baseline)" in report.checks[0].summary


def test_bad_baseline_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as error:
        load_baseline(tmp_path / "missing.json")
    assert "--update-baseline" in error.value.tip
    bad = tmp_path / "bad.json"
    bad.write_text('{"findings": []}')
    with pytest.raises(ConfigError, match="not an auditor baseline"):
        load_baseline(bad)


def test_status_mapping():
    result = CheckResult("near_duplicates", Status.WARN, "3 % redundant")
    apply_statuses(result, {"near_duplicates": {"warn": "fail"}})
    assert result.status == Status.FAIL and "warn reported as fail" in result.summary
    other = CheckResult("leakage", Status.FAIL, "x")
    apply_statuses(other, {"near_duplicates": {"warn": "fail"}})
    assert other.status == Status.FAIL
