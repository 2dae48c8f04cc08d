"""The report data model: what checks return and what the renderers read.

Plain dataclasses with a `to_dict` that is the JSON schema (schema_version 1). `Report` is also what the
Python API returns (`auditor.audit`, `auditor.audit_keras`): it answers questions (`status`, `check`,
`findings`), writes its files (`save`) and shows itself in a notebook (`_repr_html_`); the renderers it
calls are imported only when used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
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


# The overall status: the worst of the checks', in this order (a failing gate outranks a crashed check, as
# in the command line's exit code: 1 before 2). Skipped checks count as passing.
STATUS_ORDER = (Status.FAIL, Status.ERROR, Status.WARN)
SAVE_FORMATS = ("json", "html")


@dataclass
class Report:
    tool_version: str
    dataset: dict[str, Any]
    backbone: dict[str, Any]
    checks: list[CheckResult]
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    # The audit's context (images, embeddings) when the report comes from an audit in this process: what the
    # HTML's thumbnails, embedding map and histograms are drawn from. Never part of to_dict().
    _context: Any = field(default=None, init=False, repr=False, compare=False)
    _page: tuple[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def failed(self) -> bool:
        return any(c.status == Status.FAIL for c in self.checks)

    @property
    def errored(self) -> bool:
        return any(c.status == Status.ERROR for c in self.checks)

    @property
    def status(self) -> Status:
        """The worst check status: fail, then error, then warn; else pass."""
        present = {c.status for c in self.checks}
        return next((s for s in STATUS_ORDER if s in present), Status.PASS)

    def check(self, check_id: str) -> CheckResult | None:
        return next((c for c in self.checks if c.id == check_id), None)

    def findings(self, check_id: str | None = None, severity: Severity | str | None = None) -> list[Finding]:
        """Every finding, or those of one check and/or one severity (info, warning, error), in report order."""
        from auditor.errors import ConfigError

        if check_id is not None and self.check(check_id) is None:
            raise ConfigError(f"no check {check_id!r} in this report", f"Its checks: {', '.join(c.id for c in self.checks)}.")
        wanted = None
        if severity is not None:
            try:
                wanted = Severity(severity.value if isinstance(severity, Severity) else str(severity).lower())
            except ValueError:
                raise ConfigError(f"unknown severity {severity!r}",
                                  f"Use one of {', '.join(s.value for s in Severity)}.") from None
        return [f for c in self.checks if check_id is None or c.id == check_id
                for f in c.findings if wanted is None or f.severity == wanted]

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

    def attach(self, context: Any) -> "Report":
        """Keep the audit's context, so save(…, "html") and the notebook view show thumbnails and charts."""
        self._context = context
        self._page = None
        return self

    def save(self, out_dir: str | Path, formats: str | list[str] | tuple[str, ...] = SAVE_FORMATS) -> list[Path]:
        """Write the report files (json, html, markdown, junit) to `out_dir`, as `audit --out DIR --format …`
        does; returns the paths written."""
        from auditor.errors import ConfigError
        from auditor.formats.write import parse_formats, prepare_output_dir, write_reports

        chosen = parse_formats(formats)
        if "terminal" in chosen:
            raise ConfigError("'terminal' is not a file format", "print(report) shows the terminal report.")
        return write_reports(self, prepare_output_dir(Path(out_dir)), chosen, self._context)

    def html(self) -> str:
        """The HTML report as one self-contained page (what save(…, "html") writes)."""
        from auditor.formats.write import html_page

        content = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()
        if self._page is None or self._page[0] != content:  # thumbnails take a while: drawn once per content
            self._page = (content, html_page(self, self._context))
        return self._page[1]

    def _repr_html_(self) -> str:
        """A notebook shows the HTML report inline: the whole page in a sandboxed iframe (its own CSP kept)."""
        from auditor.formats.html import notebook_frame

        return notebook_frame(self.html(), self)

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {s.value}" for s in Status if (n := sum(c.status == s for c in self.checks)))
        findings = sum(len(c.findings) for c in self.checks)
        return (f"<auditor Report {self.status.value.upper()}: {len(self.checks)} checks ({counts}), "
                f"{findings} finding{'s' if findings != 1 else ''}; {self.dataset.get('root', '?')}>")

    def __str__(self) -> str:
        """The terminal report, as plain text: print(report) shows what `audit DIR` prints."""
        from auditor.formats.terminal import render_terminal

        return render_terminal(self)
