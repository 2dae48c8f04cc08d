"""The Report a user gets back from auditor.audit / audit_keras: questions, files, and the notebook view.

On the hand-made report of tests/formats (leakage, near-duplicates, class balance, split shift, integrity;
a hostile file name), so these run in a second."""

from __future__ import annotations

import html
import json
from html.parser import HTMLParser

import pytest

from auditor.errors import ConfigError
from auditor.formats.html import notebook_frame
from auditor.formats.json_report import render_json
from auditor.report import Finding, Report, Severity, Status
from tests.formats.conftest import EVIL_NAME, build_report


@pytest.fixture
def report(tmp_path) -> Report:
    built, _files = build_report(tmp_path / "data")
    integrity = built.check("integrity")
    integrity.status = Status.WARN
    integrity.findings = [
        Finding("integrity:tiny:01", Severity.WARNING, "train/ants/a1.jpg: only 20×20 pixels", ["train/ants/a1.jpg"]),
        Finding("integrity:loose_file:02", Severity.INFO, "README.txt: beside the split folders", ["README.txt"]),
        Finding("integrity:unreadable:03", Severity.ERROR, "train/bees/b2.jpg: cannot be decoded", ["train/bees/b2.jpg"]),
    ]
    return built


def test_status_is_the_worst_check_status(report):
    assert report.status == Status.FAIL == "fail"
    for check in report.checks:
        if check.status == Status.FAIL:
            check.status = Status.WARN
    assert report.status == Status.WARN
    report.checks[0].status = Status.ERROR
    assert report.status == Status.ERROR
    for check in report.checks:
        check.status = Status.SKIPPED if check.status != Status.PASS else check.status
    assert report.status == Status.PASS  # skipped counts as passing


def test_findings_filter_by_check_and_severity(report):
    everything = report.findings()
    assert len(everything) == sum(len(c.findings) for c in report.checks) > 3
    leakage = report.findings("leakage")
    assert leakage == report.check("leakage").findings and leakage
    errors = report.findings(severity="error")
    assert len(errors) == 2 and all(f.severity == Severity.ERROR for f in errors)
    assert report.findings(severity=Severity.ERROR) == errors == report.findings(severity="ERROR")
    assert report.findings("leakage", severity="info") == []
    assert [f.id for f in report.findings("integrity", severity="info")] == ["integrity:loose_file:02"]
    assert {f.id for f in report.findings(severity="warning")} | {f.id for f in errors} | \
           {f.id for f in report.findings(severity="info")} == {f.id for f in everything}


def test_findings_refuses_an_unknown_check_or_severity(report):
    with pytest.raises(ConfigError, match="no check 'leakge' in this report") as caught:
        report.findings("leakge")
    assert "leakage" in caught.value.tip
    with pytest.raises(ConfigError, match="unknown severity 'fatal'"):
        report.findings(severity="fatal")


def test_to_dict_is_the_json_schema(report):
    assert report.to_dict() == json.loads(render_json(report))
    assert "_context" not in json.dumps(report.to_dict()) and report.to_dict()["schema_version"] == 1


@pytest.mark.slow  # 1.4-3 s: `make test` runs it, the edit-test loop does not
def test_save_writes_the_files_the_cli_writes(report, tmp_path):
    written = report.save(tmp_path / "out" / "nested")
    assert [p.name for p in written] == ["report.json", "report.html"]
    assert json.loads(written[0].read_text()) == report.to_dict()
    assert written[1].read_text(encoding="utf-8") == report.html()
    every = report.save(tmp_path / "all", formats="json,markdown,junit,html")
    assert sorted(p.name for p in every) == ["report.html", "report.json", "report.junit.xml", "report.md"]
    with pytest.raises(ConfigError, match="'terminal' is not a file format"):
        report.save(tmp_path / "t", formats=["terminal"])
    with pytest.raises(ConfigError, match="unknown format"):
        report.save(tmp_path / "t", formats="pdf")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        report.save(tmp_path / "a-file")


def test_repr_is_one_line_and_str_is_the_terminal_report(report):
    text = repr(report)
    assert "\n" not in text and text.startswith("<auditor Report FAIL: 5 checks") and "findings" in text
    printed = str(report)
    assert "audit FAILED" in printed and "leakage" in printed and "\x1b[" not in printed


class _Outer(HTMLParser):
    """The elements of the notebook cell's own document (the iframe's page is an attribute value)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.iframes: list[dict[str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "iframe":
            self.iframes.append(dict(attrs))


def test_notebook_view_is_the_whole_page_in_a_sandboxed_frame(report):
    cell = report._repr_html_()
    parsed = _Outer()
    parsed.feed(cell)
    assert set(parsed.tags) <= {"div", "b", "span", "code", "iframe"}  # no script, no img outside the frame
    (frame,) = parsed.iframes
    assert frame["sandbox"] == "allow-scripts"  # no same-origin, forms, popups or top navigation
    assert frame["referrerpolicy"] == "no-referrer"
    assert frame["srcdoc"] == report.html()  # the page exactly, its CSP included
    assert "Content-Security-Policy" in frame["srcdoc"] and "default-src 'none'" in frame["srcdoc"]
    # The hostile name is text in the page, and the page is one attribute value in the cell.
    assert "<img src=x" not in cell and html.escape(html.escape(EVIL_NAME)) in cell
    assert "FAILED" in cell and "5 checks" in cell
    assert cell == notebook_frame(report.html(), report)


@pytest.mark.slow  # 1.4-3 s: `make test` runs it, the edit-test loop does not
def test_the_page_is_drawn_once_per_content(report, monkeypatch):
    calls = []
    import auditor.formats.write as write

    original = write.html_page
    monkeypatch.setattr(write, "html_page", lambda r, ctx=None: calls.append(1) or original(r, ctx))
    first = report._repr_html_()
    assert report._repr_html_() == first and len(calls) == 1
    report.checks[0].summary = "changed"
    assert "changed" in html.unescape(report._repr_html_()) and len(calls) == 2
