"""`integrity`: files that cannot be used, or that are odd enough to deserve a look."""

from __future__ import annotations

from collections import Counter

from auditor.checks.common import percent, plural
from auditor.context import AuditContext
from auditor.encoding.imaging import FORMAT_EXTENSIONS
from auditor.checks.base import Check, Evidence, Verdict
from auditor.config import Policy
from auditor.report import Finding, Severity, Status, merge_same_id, stable_finding_id

CHECK_ID = "integrity"
WALK_SEVERITY = {
    "symlink_loop": Severity.WARNING,
    "unreadable_dir": Severity.ERROR,
    "broken_link": Severity.WARNING,
    "unlabelled_file": Severity.WARNING,
    "loose_file": Severity.INFO,
    "manifest_row": Severity.ERROR,
    "ignored_by_keras": Severity.INFO,
    "link_outside_root": Severity.WARNING,
    "path_outside_root": Severity.ERROR,
    "duplicate_manifest_row": Severity.ERROR,
    "empty_class_folder": Severity.WARNING,
    "control_characters_in_name": Severity.WARNING,
    "non_utf8_name": Severity.WARNING,
}


def compute(ctx: AuditContext) -> Evidence:
    findings: list[Finding] = []
    for issue in ctx.index.issues:
        findings.append(
            Finding(
                id=stable_finding_id(CHECK_ID, issue.kind, [issue.path]),
                severity=WALK_SEVERITY.get(issue.kind, Severity.WARNING),
                message=f"{issue.path}: {issue.message}",
                paths=[issue.path],
                evidence={"kind": issue.kind},
            )
        )
    for position, record in enumerate(ctx.records):
        sha = ctx.encoded.record_sha[position]
        problem = ctx.encoded.read_problems.get(position)
        if problem is not None:
            findings.append(_finding(problem.kind, Severity.ERROR, record.path, problem.message, [record.path]))
            continue
        scan = ctx.encoded.scans.get(sha)
        if scan is None:
            continue
        for p in scan.problems:
            findings.append(_finding(p.kind, Severity(p.severity), record.path, p.message, [sha], scan_format=scan.format))
        if scan.format:
            suffix = _suffix(record.path)
            expected = FORMAT_EXTENSIONS.get(scan.format, set())
            if expected and suffix not in expected:
                message = (
                    f"extension {suffix or '(none)'} but the content is {scan.format}"
                    if suffix
                    else f"no file extension; the content is {scan.format}"
                )
                findings.append(_finding("extension_mismatch", Severity.WARNING, record.path, message, [sha, record.path]))

    for position, record in enumerate(ctx.records):  # a last guard: no file is ever dropped without a word
        sha = ctx.encoded.record_sha[position]
        if sha is not None and position not in ctx.encoded.read_problems and sha not in ctx.encoded.scans:
            findings.append(_finding("not_scanned", Severity.ERROR, record.path, "could not be scanned; not audited",
                                     [record.path]))
    # Merged here, before counting, so the summary, metrics and listed findings agree.
    findings = merge_same_id(findings)
    kinds = Counter(f.evidence["kind"] for f in findings)
    unusable = len(ctx.records) - len(ctx.usable_positions)
    counted = [f for f in findings if f.severity != Severity.INFO]
    severity_rank = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    if findings:
        # The gravest kinds first (an unreadable file before a loose README), then the commonest; none left unsaid.
        gravest = {}
        for f in findings:
            gravest[f.evidence["kind"]] = min(gravest.get(f.evidence["kind"], 2), severity_rank[f.severity])
        ordered = sorted(kinds, key=lambda kind: (gravest[kind], -kinds[kind], kind))
        top = ", ".join(f"{kinds[kind]} {kind.replace('_', ' ')}" for kind in ordered[:4])
        if len(ordered) > 4:
            top += f", {plural(len(ordered) - 4, 'other kind')}"
        summary = (f"{plural(unusable, 'file')} of {len(ctx.records)} cannot be used; "
                   f"{plural(len(findings), 'finding')} ({top})")
    else:
        summary = f"all {len(ctx.records)} files decode as images; nothing odd found"
    findings.sort(key=lambda f: (severity_rank[f.severity], f.paths[0]))
    return Evidence(
        summary=summary,
        metrics={
            "counted_findings": len(counted),
            "files": len(ctx.records),
            "usable_images": len(ctx.usable_positions),
            "unusable_files": unusable,
            "unusable_percent": percent(unusable, len(ctx.records)),
            "findings_by_kind": dict(sorted(kinds.items())),
        },
        findings=findings,
    )


def judge(evidence: Evidence, policy: Policy) -> Verdict:
    """Warn above the policy's number of findings (info findings, such as a README beside the splits, don't count)."""
    limit = policy.integrity_max_findings
    status = Status.WARN if evidence.metrics["counted_findings"] > limit else Status.PASS
    return Verdict(status, policy=f"warn above {limit}" if evidence.findings else "")


def _suffix(path: str) -> str:
    """PurePosixPath(path).suffix.lower(), without building a path object per record (10⁶ records)."""
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return name[dot:].lower() if 0 < dot < len(name) - 1 else ""


def _finding(kind: str, severity: Severity, path: str, message: str, id_parts: list[str], **evidence) -> Finding:
    return Finding(
        id=stable_finding_id(CHECK_ID, kind, id_parts),
        severity=severity,
        message=f"{path}: {message}",
        paths=[path],
        evidence={"kind": kind, **{k: v for k, v in evidence.items() if v is not None}},
    )


CHECK = Check(CHECK_ID, compute, judge)
