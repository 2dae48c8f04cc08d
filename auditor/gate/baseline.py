"""Baselines and accepted findings: only what is new can fail the gate.

A baseline file is JSON (schema_version 1) listing finding ids with, for people, the check, message and
paths when it was written. Finding ids hash the *contents* of the images involved, so renaming or
reordering files keeps them; a group that gains a new image gets a new id and so counts as new.

    {"schema_version": 1, "tool": "auditor",
     "findings": [{"id": "leakage:group:3f0c…", "check": "leakage", "severity": "error",
                   "message": "…", "paths": ["val/a.jpg", "train/b.jpg"]}]}

A check whose status is `warn` or `fail` and all of whose findings are accepted (by the baseline, or
because `--against` found them among existing images only) is reported as `pass`, with the count in
its summary and `metrics.gate`. A check that fails without findings cannot be baselined.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from auditor.atomic import atomic_write_text
from auditor.errors import ConfigError
from auditor.report import CheckResult, Finding, Report, Status

BASELINE_SCHEMA_VERSION = 1
ACCEPTED = "accepted"  # the evidence key that marks an accepted finding, with the reason as value


def load_baseline(path: Path) -> set[str]:
    """The finding ids recorded in a baseline file. A missing file is an error (use --update-baseline)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"baseline {str(path)!r} does not exist",
                          "Create it with --update-baseline, or check the path given to --baseline.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("schema_version") != BASELINE_SCHEMA_VERSION:
            raise ValueError(f"schema_version must be {BASELINE_SCHEMA_VERSION}")
        return {str(entry["id"]) for entry in data["findings"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"baseline {str(path)!r} is not an auditor baseline: {exc}",
                          "Rewrite it with --update-baseline.") from None


def render_baseline(report: Report) -> str:
    """Every finding of the report, sorted by id, so the file diffs cleanly between runs."""
    entries = []
    for check in report.checks:
        for finding in check.findings:
            entries.append({"id": finding.id, "check": check.id, "severity": finding.severity.value,
                            "message": finding.message, "paths": list(finding.paths)})
    entries.sort(key=lambda e: e["id"])
    document = {"schema_version": BASELINE_SCHEMA_VERSION, "tool": "auditor", "findings": entries}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write_baseline(report: Report, path: Path) -> None:
    atomic_write_text(Path(path), render_baseline(report))


def accept_findings(results: list[CheckResult], reason_for: Callable[[Finding], str | None]) -> int:
    """Mark accepted findings (reason_for gives the reason, or None for a new finding), and pass a warn/fail
    check when all its findings are accepted. Returns how many were accepted."""
    total = 0
    for result in results:
        reasons: dict[str, int] = {}
        for finding in result.findings:
            reason = reason_for(finding)
            if reason:
                finding.evidence[ACCEPTED] = reason
                reasons[reason] = reasons.get(reason, 0) + 1
        accepted = sum(reasons.values())
        if not accepted:
            continue
        total += accepted
        new = len(result.findings) - accepted
        result.metrics["gate"] = {**result.metrics.get("gate", {}), "accepted": accepted, "new": new,
                                  "accepted_by": reasons}
        why = ", ".join(reasons)
        if new == 0 and result.status in (Status.WARN, Status.FAIL):
            result.metrics["gate"].setdefault("status_before", result.status.value)
            result.status = Status.PASS
            result.summary += f" — all {accepted} accepted ({why}), none new"
        elif new and result.status in (Status.WARN, Status.FAIL):
            result.summary += f" — {new} new, {accepted} accepted ({why})"
    return total


def apply_statuses(result: CheckResult, statuses: dict[str, dict[str, str]]) -> None:
    """The policy's per-check status mapping (e.g. near_duplicates: warn -> fail)."""
    mapping = statuses.get(result.id, {})
    target = mapping.get(result.status.value)
    if target and target != result.status.value:
        before = result.status.value
        result.status = Status(target)
        result.metrics.setdefault("gate", {})["status_before"] = before
        result.summary += f" (policy: {before} reported as {target})"
