"""Markdown, JUnit and HTML renderers: escaping, content, caps. Pure renderers, no backbone."""

from __future__ import annotations

import pytest

import base64
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from auditor.formats.html import FINDINGS_PER_CHECK, render_html
from auditor.formats.junit import render_junit
from auditor.formats.markdown import escape_md, render_markdown
from auditor.report import CheckResult, Finding, Report, Severity, Status
from auditor.formats.visuals import Thumbnails, make_thumbnails
from tests.formats.conftest import EVIL_LABEL, EVIL_NAME, build_report, projection_for, properties_for


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict]]:
    parser = _Collector()
    parser.feed(html)
    return parser.tags


def test_markdown_summary_escapes_and_lists_only_new_findings(sample):
    report, _files = sample
    text = render_markdown(report)
    assert "audit FAILED" in text
    assert "| `leakage` | ❌ fail |" in text
    assert "<img" not in text and "&lt;img src=x onerror=alert\\(1\\)&gt;" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in text
    assert "leakage:group:0123456789abcdef" in text
    assert "near_duplicates:group" not in text  # accepted: counted in the table, not listed
    assert escape_md("a|b*c_d`e\nf") == "a\\|b\\*c\\_d\\`e f"


def test_junit_has_a_case_per_check_and_the_failure_message(sample):
    report, _files = sample
    root = ET.fromstring(render_junit(report))
    suite = root.find("testsuite")
    assert suite.get("tests") == "5" and suite.get("failures") == "1" and suite.get("skipped") == "1"
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert set(cases) == {"leakage", "near_duplicates", "class_balance", "split_shift", "integrity"}
    failure = cases["leakage"].find("failure")
    assert "policy: fail above 0 %" in failure.get("message")
    assert EVIL_NAME in failure.text  # the XML parser unescaped it: it was text, not markup
    assert cases["near_duplicates"].find("failure") is None
    assert cases["integrity"].find("skipped") is not None


def test_junit_survives_control_characters():
    check = CheckResult("integrity", Status.FAIL, "bad \x01 name", findings=[
        Finding("integrity:x:1", Severity.ERROR, "file a\x07b.jpg", ["a\x07b.jpg"])])
    ET.fromstring(render_junit(Report("0", {"root": "r"}, {}, [check])))


def test_html_escapes_untrusted_text_and_requests_nothing(sample):
    report, files = sample
    html = render_html(report, make_thumbnails(report, files.get), projection_for(files), properties_for())
    assert "<img src=x" not in html and "<script>alert" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in html
    tags = _tags(html)
    for tag, attrs in tags:
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("data:", "#")), (tag, name, value[:80])
    assert not [attrs for tag, attrs in tags if tag in ("link", "iframe", "object", "embed", "base")]
    assert all("src" not in attrs for tag, attrs in tags if tag == "script")
    csp = [a["content"] for t, a in tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]
    assert "http://" not in html.split("<body", 1)[1].replace("http://www.w3.org", "")


def test_html_has_the_sections_and_charts(sample):
    report, files = sample
    html = render_html(report, make_thumbnails(report, files.get), projection_for(files), properties_for())
    for check in report.checks:
        assert f'id="check-{check.id}"' in html
    alts = [a.get("alt", "") for t, a in _tags(html) if t == "img"]
    assert any("accuracy per epoch" in alt for alt in alts)
    assert any("loss per epoch" in alt for alt in alts)
    assert any("gap_attribution" in alt for alt in alts)
    assert any("Images per class" in alt for alt in alts)
    assert any("2-D projection" in alt for alt in alts)
    assert any("Image properties" in alt for alt in alts)
    assert sum(1 for t, a in _tags(html) if t == "img" and "thumb" in a.get("class", "")) == 4
    assert "accepted: baseline" in html


def test_sections_of_absent_checks_are_absent_and_the_map_stands_alone(sample):
    report, files = sample
    report.checks = [c for c in report.checks if c.id != "split_shift"]
    html = render_html(report, Thumbnails(), projection_for(files), None)
    assert 'id="check-split_shift"' not in html and "per epoch" not in html
    assert 'id="embedding-map"' in html


def test_thumbnails_most_severe_first_with_counts_left_out(sample):
    report, files = sample
    thumbs = make_thumbnails(report, files.get, max_images=2)
    assert set(thumbs.images) == {f"val/ants/{EVIL_NAME}", "train/ants/a1.jpg"}  # the failing leak first
    assert thumbs.omitted == 2
    header = base64.b64decode(thumbs.images["train/ants/a1.jpg"].split(",", 1)[1])[:3]
    assert header == b"\xff\xd8\xff"  # a JPEG
    missing = make_thumbnails(report, lambda p: None)
    assert missing.failed == 4 and not missing.images


@pytest.mark.slow
def test_a_100k_image_report_stays_under_25_mb(sample):
    """A dataset of 100 000 images with 20 000 duplicate groups: caps keep the page small and fast."""
    report, files = sample
    findings = [Finding(f"near_duplicates:group:{i:016x}", Severity.WARNING, f"3 near-identical images: g{i}/a.jpg …",
                        [f"train/c{i % 100}/g{i}_{k}.jpg" for k in range(3)],
                        evidence={"members": [{"path": f"train/c{i % 100}/g{i}_{k}.jpg", "split": "train",
                                               "label": f"c{i % 100}"} for k in range(3)],
                                  "pairs": [{"a": f"g{i}_0", "b": f"g{i}_1", "kinds": ["embedding"], "cosine": 0.97}] * 3,
                                  "max_cosine": 0.97})
                for i in range(20_000)]
    report.checks.append(CheckResult("near_duplicates_big", Status.WARN, "20 000 groups", findings=findings,
                                     metrics={"groups": 20_000, "sizes": list(range(20_000))}))
    jpeg = "data:image/jpeg;base64," + "A" * 9_000  # a 112-px thumbnail is 5–9 kB of base64
    thumbs = Thumbnails(images={p: jpeg for f in findings[:200] for p in f.paths}, omitted=59_400)
    started = time.perf_counter()
    html = render_html(report, thumbs, projection_for(files), properties_for())
    assert len(html.encode()) < 25 * 2**20
    assert time.perf_counter() - started < 30
    assert f"… and {20_000 - FINDINGS_PER_CHECK} more findings in report.json" in html
    assert "59400 images not shown (cap)" in html


def test_every_format_shows_hostile_names_escaped_and_json_keeps_them_exact():
    import json
    import os
    import re

    from auditor.formats.json_report import render_json
    from auditor.formats.terminal import render_terminal

    name = os.fsdecode(b"val/\x1b]0;owned\x07/bad\xff\x1b[2J\r\n\xe2\x80\xae.jpg")
    finding = Finding("integrity:control_characters_in_name:1", Severity.WARNING, f"{name}: odd name", [name],
                      evidence={"kind": "control_characters_in_name", "members": [{"path": name, "split": "val\x1b[31m",
                                                                                 "label": "\x1b]0;x\x07"}]})
    check = CheckResult("integrity", Status.FAIL, f"1 finding ({name})", metrics={"per_class": {"\x1b[31m": 1}},
                        findings=[finding])
    report = Report("0", {"root": os.fsdecode(b"/data/\xfe\x1b[H"), "layout": "splits",
                          "splits": {"val\x1b[31m": {"images": 1, "classes": {"\x1b]0;x\x07": 1}}}},
                    {"name": None, "note": "n\x1b[0m"}, [check], notes=[f"note about {name}"])
    raw_control = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\ud800-\udfff]")
    outputs = {"terminal": render_terminal(report, width=400), "markdown": render_markdown(report),
               "junit": render_junit(report), "html": render_html(report)}
    for fmt, text in outputs.items():
        text.encode("utf-8")
        assert not raw_control.search(text), (fmt, raw_control.findall(text)[:5])
        shown = re.sub(r"\\(.)", r"\1", text) if fmt == "markdown" else text  # as Markdown displays it
        assert "\\x1b[2J" in shown and "bad\\xff" in shown, fmt
    ET.fromstring(outputs["junit"])
    document = render_json(report)
    assert not raw_control.search(document)
    assert json.loads(document)["checks"][0]["findings"][0]["paths"] == [name]  # exact, for tools


def test_a_label_the_font_cannot_draw_is_kept_as_text_without_a_warning():
    import base64
    import warnings

    from auditor.formats.plots import class_balance_chart

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would reach the user's terminal
        uri = class_balance_chart({"train": {"classes": {"🐜 ant": 3, "bee": 2}}, "val": {"classes": {"🐜 ant": 1, "bee": 1}}})
    assert "🐜" in base64.b64decode(uri.split(",", 1)[1]).decode("utf-8")


def test_the_header_counts_one_image_and_one_class_in_the_singular(sample):
    from auditor.formats.terminal import render_terminal

    report, _ = sample
    for text in (render_terminal(report, width=400), render_html(report)):
        assert "train 3 images / 2 classes" in text and "val 1 image / 1 class" in text
        assert "1 images" not in text and "1 classes" not in text


def test_pairs_left_out_are_counted_from_the_groups_total_not_from_the_listed_pairs(sample):
    report, _files = sample
    pairs = [{"a": f"train/c/{i}.jpg", "b": f"train/c/{i + 1}.jpg", "kinds": ["embedding"]} for i in range(10)]
    finding = Finding("near_duplicates:group:00ab", Severity.WARNING, "600 near-identical images", ["train/c/0.jpg"],
                      evidence={"members": [{"path": "train/c/0.jpg", "split": "train", "label": "c"}],
                                "pairs": pairs, "pairs_total": 179_700})
    report.checks.append(CheckResult("near_duplicates_capped", Status.WARN, "one crowd", findings=[finding]))
    html = render_html(report, Thumbnails(images={}, omitted=0), projection_for(_files), properties_for())
    assert "… 179696 more pairs (6 of them listed in report.json)" in html
    finding.evidence.pop("pairs_total")  # a report of an earlier version lists every pair
    html = render_html(report, Thumbnails(images={}, omitted=0), projection_for(_files), properties_for())
    assert "… 6 more pairs in report.json" in html
