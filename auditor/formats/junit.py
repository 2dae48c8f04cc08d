"""JUnit XML: each check a test case, so CI systems list the audit beside the unit tests.

fail → <failure> with the summary as message and the new findings as text; error → <error>;
skipped → <skipped>; warn passes, with its findings in <system-out>. Accepted (baselined) findings
are listed separately and never fail.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from auditor.report import CheckResult, Report, Status
from auditor.text import printable_report

# XML 1.0 cannot carry most control characters, even escaped; file names can contain them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: object) -> str:
    return _NOT_XML.sub("\ufffd", str(text))


def _findings_text(check: CheckResult, limit: int) -> str:
    new = [f for f in check.findings if "accepted" not in f.evidence]
    accepted = len(check.findings) - len(new)
    lines = [f"[{f.severity.value}] {f.message} ({f.id})" for f in new[:limit]]
    if len(new) > limit:
        lines.append(f"… and {len(new) - limit} more in report.json")
    if accepted:
        lines.append(f"{accepted} accepted finding(s) not listed (baseline or existing images)")
    return "\n".join(lines)


def render_junit(report: Report, findings_per_check: int = 50) -> str:
    report = printable_report(report)  # control characters shown as escapes, not replaced or raw
    root_name = str(report.dataset.get("root", "dataset"))
    suite = ET.Element("testsuite", {
        "name": _clean(f"auditor {root_name}"),
        "tests": str(len(report.checks)),
        "failures": str(sum(c.status == Status.FAIL for c in report.checks)),
        "errors": str(sum(c.status == Status.ERROR for c in report.checks)),
        "skipped": str(sum(c.status == Status.SKIPPED for c in report.checks)),
        "time": f"{report.timings.get('total', 0.0):.3f}",
    })
    for check in report.checks:
        case = ET.SubElement(suite, "testcase", {"classname": "auditor", "name": check.id, "time": "0"})
        text = _clean(_findings_text(check, findings_per_check))
        if check.status == Status.FAIL:
            failure = ET.SubElement(case, "failure", {"message": _clean(check.summary), "type": "policy"})
            failure.text = text
        elif check.status == Status.ERROR:
            error = ET.SubElement(case, "error", {"message": _clean(check.summary), "type": "crash"})
            error.text = text
        elif check.status == Status.SKIPPED:
            ET.SubElement(case, "skipped", {"message": _clean(check.summary)})
        else:
            out = ET.SubElement(case, "system-out")
            out.text = _clean(f"{check.status.value}: {check.summary}" + (f"\n{text}" if text else ""))
    suites = ET.Element("testsuites", {"name": "auditor"})
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
