"""The HTML report: one self-contained file (inline CSS, JS, images; a Content-Security-Policy that
forbids every network request), built from jinja2 templates with auto-escaping on, so untrusted text
(file names, labels, messages) is always text.

Pure: `render_html(report, thumbnails, projection, properties) -> str`. Thumbnails, the embedding
projection and property samples are computed beforehand (auditor.formats.visuals); charts are drawn here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

from auditor.report import CheckResult, Finding, Report, Status
from auditor.text import printable, printable_report, printable_tree

FINDINGS_PER_CHECK = 100  # rows per check; the rest are counted, and all are in report.json
MEMBERS_PER_FINDING = 6
PAIRS_PER_FINDING = 4
STATUS_RANK = {Status.FAIL: 0, Status.ERROR: 1, Status.WARN: 2, Status.PASS: 3, Status.SKIPPED: 4}
SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}
SHIFT_CHECK = "split_shift"


@dataclass
class Chart:
    title: str
    uri: str


def ordered_checks(report: Report) -> list[CheckResult]:
    """Most severe status first (stable within a status)."""
    return sorted(report.checks, key=lambda c: STATUS_RANK.get(c.status, 9))


def ordered_findings(check: CheckResult) -> list[Finding]:
    """New before accepted, then by severity, then as the check ordered them."""
    return sorted(check.findings, key=lambda f: ("accepted" in f.evidence, SEVERITY_RANK.get(f.severity.value, 9)))


def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("auditor.formats", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["number"] = _format_number
    return env


def render_html(report: Report, thumbnails=None, projection: dict | None = None,
                properties: dict | None = None) -> str:
    """The whole report as one HTML document."""
    report = printable_report(report)  # autoescape stops markup; this stops control characters and bidi overrides
    images = {printable(path): uri for path, uri in (getattr(thumbnails, "images", {}) or {}).items()}
    projection = printable_tree(projection) if projection else projection
    properties = printable_tree(properties) if properties else properties
    checks = [_check_view(check, images) for check in report.checks]
    shift_charts = _shift_charts(projection, properties)
    shift_home = SHIFT_CHECK if report.check(SHIFT_CHECK) is not None else None
    if shift_home:
        for view in checks:
            if view["id"] == shift_home:
                view["charts"] = shift_charts + view["charts"]
    verdict = "FAILED" if report.failed else "ERROR" if report.errored else "PASSED"
    template = _environment().get_template("report.html.j2")
    return template.render(
        report=report,
        verdict=verdict,
        dataset=report.dataset,
        checks=checks,
        shift_charts=[] if shift_home else shift_charts,
        projection=projection,
        thumbnails_omitted=getattr(thumbnails, "omitted", 0),
        thumbnails_failed=getattr(thumbnails, "failed", 0),
        thumbnails_shown=len(images),
        findings_per_check=FINDINGS_PER_CHECK,
        timings={k: round(v, 2) for k, v in report.timings.items()},
    )


def _check_view(check: CheckResult, images: dict[str, str]) -> dict[str, Any]:
    findings = ordered_findings(check)
    shown = findings[:FINDINGS_PER_CHECK]
    return {
        "id": check.id,
        "status": check.status.value,
        "summary": check.summary,
        "findings": [_finding_view(f, images) for f in shown],
        "findings_total": len(findings),
        "findings_hidden": len(findings) - len(shown),
        "accepted": sum("accepted" in f.evidence for f in findings),
        "charts": _check_charts(check),
        "metrics": check.metrics,
    }


def _pairs_hidden(evidence: dict[str, Any], shown: int) -> dict[str, int]:
    """How many of a group's pairs the page leaves out, and how many of those report.json lists (it lists at most
    checks.common.LISTED_PAIRS of a group's `pairs_total`)."""
    listed = len(evidence["pairs"]) if isinstance(evidence.get("pairs"), list) else 0
    total = evidence.get("pairs_total")
    total = total if isinstance(total, int) and not isinstance(total, bool) and total >= listed else listed
    return {"pairs_hidden": max(0, total - shown), "pairs_hidden_listed": max(0, listed - shown)}


def _finding_view(finding: Finding, images: dict[str, str]) -> dict[str, Any]:
    evidence = finding.evidence or {}
    members = evidence.get("members")
    if not isinstance(members, list) or not all(isinstance(m, dict) and "path" in m for m in members):
        members = [{"path": p} for p in finding.paths]
    shown = [{"path": str(m["path"]), "split": m.get("split"), "label": m.get("label"),
              "thumbnail": images.get(str(m["path"]))} for m in members[:MEMBERS_PER_FINDING]]
    pairs = []
    for pair in (evidence.get("pairs") or [])[:PAIRS_PER_FINDING]:
        if isinstance(pair, dict):
            pairs.append({"a": str(pair.get("a", "")), "b": str(pair.get("b", "")), "text": _pair_text(pair)})
    similarity = []
    if _is_number(evidence.get("max_cosine")):
        similarity.append(f"cosine up to {evidence['max_cosine']:.3f}")
    if _is_number(evidence.get("min_phash_distance")):
        similarity.append(f"pHash distance {evidence['min_phash_distance']}")
    return {
        "id": finding.id,
        "severity": finding.severity.value,
        "message": finding.message,
        "accepted": evidence.get("accepted"),
        "members": shown,
        "members_hidden": max(0, len(members) - len(shown)),
        "pairs": pairs,
        **_pairs_hidden(evidence, len(pairs)),
        "similarity": ", ".join(similarity),
    }


def _pair_text(pair: dict) -> str:
    parts = []
    kinds = pair.get("kinds")
    if isinstance(kinds, list) and kinds:
        parts.append("+".join(str(k) for k in kinds))
    if _is_number(pair.get("cosine")):
        parts.append(f"cosine {pair['cosine']:.3f}")
    if _is_number(pair.get("phash_distance")):
        parts.append(f"pHash {pair['phash_distance']}")
    if _is_number(pair.get("dhash_distance")):
        parts.append(f"dHash {pair['dhash_distance']}")
    if pair.get("mirrored"):
        parts.append("mirrored")
    return ", ".join(parts)


def _check_charts(check: CheckResult) -> list[Chart]:
    from auditor.formats import plots

    charts: list[Chart] = []
    metrics = check.metrics or {}
    if check.id == "class_balance" and isinstance(metrics.get("per_split"), dict):
        uri = plots.class_balance_chart(metrics["per_split"])
        if uri:
            charts.append(Chart("Images per class, per split", uri))
    balance = metrics.get("class_balance") if isinstance(metrics.get("class_balance"), dict) else None
    if balance:
        for stage in ("before", "incoming", "after"):
            if isinstance(balance.get(stage), dict) and balance[stage]:
                uri = plots.class_balance_chart(balance[stage])
                if uri:
                    charts.append(Chart(f"Images per class, {stage}", uri))
    for path, history in _find_key(metrics, "history"):
        if isinstance(history, dict):
            for title, uri in plots.history_charts(history):
                charts.append(Chart(f"{'.'.join(path) or 'history'}: {title} per epoch", uri))
    for path, values in _find_key(metrics, "attribution", substring=True):
        if isinstance(values, dict):
            uri = plots.bar_chart(values, path[-1] if path else "attribution")
            if uri:
                charts.append(Chart(".".join(path), uri))
    return charts


def _shift_charts(projection: dict | None, properties: dict | None) -> list[Chart]:
    from auditor.formats import plots

    charts = []
    if projection and projection.get("x"):
        title = "Embeddings, 2-D projection (PCA), coloured by split"
        if projection.get("points", 0) < projection.get("total", 0):
            title += f" — {projection['points']} of {projection['total']} images"
        charts.append(Chart(title, plots.projection_chart(projection)))
    if properties:
        uri = plots.property_histograms(properties)
        if uri:
            charts.append(Chart("Image properties per split (density)", uri))
    return charts


def _find_key(value: Any, key: str, substring: bool = False, path: tuple = (), depth: int = 0) -> Iterator[tuple[tuple, Any]]:
    """(path, value) of every dict entry named `key` (or containing it), a few levels deep."""
    if depth > 3 or not isinstance(value, dict):
        return
    for name, item in value.items():
        here = path + (str(name),)
        if name == key or (substring and key in str(name).lower()):
            yield here, item
        elif isinstance(item, dict):
            yield from _find_key(item, key, substring, here, depth + 1)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _format_number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# The notebook view (Report._repr_html_). Notebooks sanitise or sandbox their outputs differently (Jupyter
# strips scripts from untrusted outputs, VS Code and Colab run outputs in their own frames), so the page goes
# in whole, as the srcdoc of an iframe: its own Content-Security-Policy (no network) applies inside, and the
# sandbox lets its one script run without the notebook's origin (no allow-same-origin, forms, popups or
# navigation of the notebook). The line above the frame says the verdict where a viewer drops iframes.
NOTEBOOK_FRAME_HEIGHT_PX = 720


def notebook_frame(page: str, report: Report) -> str:
    """A notebook cell's HTML for the report page `page`."""
    from html import escape

    counts = ", ".join(f"{n} {status.value}" for status in Status
                       if (n := sum(c.status == status for c in report.checks)))
    findings = sum(len(c.findings) for c in report.checks)
    verdict = "FAILED" if report.failed else "ERROR" if report.errored else "PASSED"
    colour = "#cf222e" if report.failed else "#8250df" if report.errored else "#1a7f37"
    line = (f'<div style="font: 13px/1.4 system-ui, sans-serif; margin: 2px 0 6px">'
            f'<b>auditor</b> <span style="color: {colour}; font-weight: 600">{verdict}</span> — '
            f'{escape(str(report.dataset.get("root", "")))}: {len(report.checks)} checks ({escape(counts)}), '
            f'{findings} finding{"s" if findings != 1 else ""}. '
            f'<code>report.save("reports")</code> writes report.json and report.html.</div>')
    frame = (f'<iframe srcdoc="{escape(page, quote=True)}" sandbox="allow-scripts" referrerpolicy="no-referrer" '
             f'title="auditor report" style="width: 100%; height: {NOTEBOOK_FRAME_HEIGHT_PX}px; '
             f'border: 1px solid #d0d7de; border-radius: 6px; resize: vertical"></iframe>')
    return f'<div class="auditor-report">{line}{frame}</div>'
