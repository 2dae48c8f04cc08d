"""`integrity`: every file that is not audited is named, and the counts agree with the findings listed."""

from __future__ import annotations

import re

from auditor.checks import integrity
from auditor.dataset import WalkIssue
from auditor.imaging import Problem
from auditor.report import merge_same_id
from tests.checks.synthetic_audit import synthetic_context


def _context():
    items = [{"path": f"train/a/{i}.jpg", "label": "a"} for i in range(4)]
    items += [{"path": f"train/b/copy{i}.jpg", "label": "b", "content": "same tiny image"} for i in range(3)]
    ctx = synthetic_context(items, with_embeddings=False)
    tiny = ctx.encoded.scans[ctx.encoded.record_sha[4]]
    tiny.problems.append(Problem("tiny", "warning", "only 8×8 pixels"))
    return ctx


def _summary_count(summary: str) -> int:
    return int(re.search(r"(\d+) findings?", summary).group(1))


def test_counts_in_summary_and_metrics_agree_with_the_findings_listed():
    ctx = _context()
    ctx.index.issues += [WalkIssue(f"m.csv:{n}", "duplicate_manifest_row", "listed again (first at line 5)")
                         for n in (26, 27, 28)]
    result = integrity.run(ctx)
    assert merge_same_id(list(result.findings)) == result.findings  # nothing left for the runner to merge
    assert _summary_count(result.summary) == len(result.findings)
    assert sum(result.metrics["findings_by_kind"].values()) == len(result.findings)
    assert result.metrics["findings_by_kind"]["duplicate_manifest_row"] == 3  # each repeat named
    tiny = [f for f in result.findings if f.evidence["kind"] == "tiny"]
    assert len(tiny) == 1 and len(tiny[0].paths) == 3  # one content at three paths: one finding


def test_a_file_that_changed_between_reads_is_a_finding_not_a_silent_drop():
    ctx = _context()
    ctx.encoded.record_sha[1] = None
    ctx.encoded.read_problems[1] = Problem("unstable_content", "error", "content changed between two reads")
    result = integrity.run(ctx)
    assert result.metrics["unusable_files"] == 1
    assert [f.paths for f in result.findings if f.evidence["kind"] == "unstable_content"] == [["train/a/1.jpg"]]
    assert "nothing odd" not in result.summary


def test_a_record_without_a_scan_is_never_silent():
    ctx = _context()
    del ctx.encoded.scans[ctx.encoded.record_sha[0]]
    result = integrity.run(ctx)
    assert result.metrics["unusable_files"] == 1
    assert [f.evidence["kind"] for f in result.findings if f.paths == ["train/a/0.jpg"]] == ["not_scanned"]
