"""The Markdown summary: compact, for a pull-request comment or $GITHUB_STEP_SUMMARY.

Untrusted text (file names, labels, messages) is escaped so it can neither format nor inject HTML.
"""

from __future__ import annotations

import re

from auditor.report import Report, Status
from auditor.text import printable_report

ICON = {Status.PASS: "✅", Status.WARN: "⚠️", Status.FAIL: "❌", Status.ERROR: "💥", Status.SKIPPED: "⏭️"}
# Only characters that can start formatting mid-line (every line we write starts with our own text).
_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def escape_md(text: object) -> str:
    """Text as literal Markdown: HTML characters as entities, formatting characters backslash-escaped,
    line breaks as spaces (a table cell must stay on one line)."""
    value = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    value = _SPECIAL.sub(r"\\\1", value)
    return " ".join(value.splitlines())


def render_markdown(report: Report, findings_per_check: int = 5) -> str:
    report = printable_report(report)  # control characters and undecodable bytes shown as escapes
    verdict = "FAILED" if report.failed else "ERROR" if report.errored else "PASSED"
    icon = "❌" if report.failed else "💥" if report.errored else "✅"
    dataset = report.dataset
    splits = ", ".join(f"{escape_md(name)} {info['images']}" for name, info in dataset.get("splits", {}).items())
    lines = [f"## {icon} auditor: audit {verdict}", "",
             f"Dataset `{_code(dataset.get('root', ''))}` ({escape_md(dataset.get('layout', ''))}; {splits} images)"]
    against = dataset.get("against")
    if against:
        lines.append(f"— {against['incoming_images']} incoming images audited against "
                     f"{against['existing_images']} existing.")
    lines += ["", "| check | status | summary |", "|---|---|---|"]
    for check in report.checks:
        lines.append(f"| `{check.id}` | {ICON[check.status]} {check.status.value} | {escape_md(check.summary)} |")
    for check in report.checks:
        new = [f for f in check.findings if "accepted" not in f.evidence]
        if not new or check.status not in (Status.FAIL, Status.WARN, Status.ERROR):
            continue
        accepted = len(check.findings) - len(new)
        lines += ["", f"<details{' open' if check.status == Status.FAIL else ''}><summary><b>{check.id}</b>: "
                      f"{len(new)} new finding{'s' if len(new) != 1 else ''}"
                      + (f" ({accepted} accepted)" if accepted else "") + "</summary>", ""]
        for finding in new[:findings_per_check]:
            lines.append(f"- **{finding.severity.value}** {escape_md(finding.message)} "
                         f"<sub>`{_code(finding.id)}`</sub>")
        if len(new) > findings_per_check:
            lines.append(f"- … and {len(new) - findings_per_check} more in report.json")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _code(text: object) -> str:
    """Text inside a code span: backticks cannot close it, and `<` stays literal inside `<details>`."""
    return str(text).replace("`", "ˋ").replace("\n", " ").replace("<", "‹").replace(">", "›")
