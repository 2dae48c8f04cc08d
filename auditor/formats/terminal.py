"""The terminal report: a status table, then the top findings of each check, with paths."""

from __future__ import annotations

import io

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from auditor.report import Report, Status
from auditor.text import plural, printable_report

STYLE = {Status.PASS: "green", Status.WARN: "yellow", Status.FAIL: "bold red", Status.ERROR: "bold magenta",
         Status.SKIPPED: "dim"}
SEVERITY_STYLE = {"error": "red", "warning": "yellow", "info": "dim"}


def build_renderable(report: Report, findings_per_check: int = 5) -> Group:
    report = printable_report(report)  # no name reaches the terminal raw (escapes, CR, bidi overrides)
    dataset = report.dataset
    split_text = ", ".join(
        f"{name} {plural(info['images'], 'image')} / {plural(len(info['classes']), 'class', 'classes')}"
        for name, info in dataset["splits"].items()
    )
    header = Text.assemble(
        ("auditor ", "bold"), (report.tool_version, "dim"), "  ",
        (str(dataset["root"]), "bold cyan"), f"  ({dataset['layout']} layout: {split_text})",
    )
    table = Table(show_header=True, header_style="bold", expand=True, box=None, padding=(0, 1))
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("summary", ratio=1)
    for check in report.checks:
        table.add_row(check.id, Text(check.status.value.upper(), style=STYLE[check.status]), escape(check.summary))
    parts: list = [header, Text(""), table]
    for check in report.checks:
        if not check.findings:
            continue
        shown = check.findings[:findings_per_check]
        lines = Text()
        for finding in shown:
            lines.append("• ", style=SEVERITY_STYLE[finding.severity.value])
            lines.append(finding.message + "\n")
        if len(check.findings) > len(shown):
            lines.append(f"… and {len(check.findings) - len(shown)} more in report.json\n", style="dim")
        parts.append(Panel(lines, title=f"{check.id} ({len(check.findings)})", title_align="left",
                           border_style=STYLE[check.status]))
    if report.notes:
        notes = Text()
        for note in report.notes:
            notes.append("note: ", style="dim bold")
            notes.append(note + "\n", style="dim")
        parts.append(notes)
    verdict = "FAILED" if report.failed else "ERROR" if report.errored else "PASSED"
    style = "bold red" if report.failed else "bold magenta" if report.errored else "bold green"
    failed = [c.id for c in report.checks if c.status == Status.FAIL]
    parts.append(Text.assemble((f"audit {verdict}", style), (f": {', '.join(failed)}" if failed else "", style)))
    return Group(*parts)


def render_terminal(report: Report, width: int = 110, color: bool = False) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, color_system="standard" if color else None,
                      highlight=False, soft_wrap=False)
    console.print(build_renderable(report))
    return buffer.getvalue()
