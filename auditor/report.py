"""The report data model: what checks return and what the renderers read.

Plain dataclasses with a `to_dict` that is the JSON schema (schema_version 1).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from auditor.text import utf8_bytes

SCHEMA_VERSION = 1


class Status(str, Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"
    SKIPPED = "skipped"


class Severity(str, Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def stable_finding_id(check_id: str, kind: str, content_hashes: list[str]) -> str:
    """An id that survives renames and reordering: it hashes the images' contents, not their paths."""
    digest = hashlib.sha256()
    digest.update(f"{check_id}\0{kind}\0".encode())
    for content_hash in sorted(set(content_hashes)):
        digest.update(utf8_bytes(content_hash))  # a path that is not UTF-8 hashes as its bytes
        digest.update(b"\0")
    return f"{check_id}:{kind}:{digest.hexdigest()[:16]}"


def merge_same_id(findings: list["Finding"]) -> list["Finding"]:
    """The same content at several paths gives one finding listing every path (ids stay unique)."""
    merged: dict[str, Finding] = {}
    for finding in findings:
        if finding.id in merged:
            kept = merged[finding.id]
            kept.paths.extend(p for p in finding.paths if p not in kept.paths)
        else:
            merged[finding.id] = finding
    return list(merged.values())


@dataclass
class Finding:
    id: str
    severity: Severity
    message: str
    paths: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Finding":
        return cls(id=data["id"], severity=Severity(data["severity"]), message=data["message"],
                   paths=list(data["paths"]), evidence=data.get("evidence", {}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity.value,
            "message": self.message,
            "paths": list(self.paths),
            "evidence": self.evidence,
        }


@dataclass
class CheckResult:
    id: str
    status: Status
    summary: str
    metrics: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CheckResult":
        return cls(id=data["id"], status=Status(data["status"]), summary=data["summary"],
                   metrics=data.get("metrics", {}), findings=[Finding.from_dict(f) for f in data.get("findings", [])])

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "summary": self.summary,
            "metrics": self.metrics,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class Report:
    tool_version: str
    dataset: dict[str, Any]
    backbone: dict[str, Any]
    checks: list[CheckResult]
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return any(c.status == Status.FAIL for c in self.checks)

    @property
    def errored(self) -> bool:
        return any(c.status == Status.ERROR for c in self.checks)

    def check(self, check_id: str) -> CheckResult | None:
        return next((c for c in self.checks if c.id == check_id), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "auditor", "version": self.tool_version},
            "dataset": self.dataset,
            "backbone": self.backbone,
            "notes": list(self.notes),
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "checks": [c.to_dict() for c in self.checks],
        }
