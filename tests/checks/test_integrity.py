"""integrity: walk issues, unreadable files and decode problems become findings; the policy counts them."""

from __future__ import annotations

import re

from auditor.checks import CHECKS, integrity
from auditor.config import Policy
from auditor.encoding.imaging import Problem
from auditor.index.dataset import WalkIssue
from auditor.report import Severity, Status, merge_same_id
from tests.checks.synthetic_audit import synthetic_context


def items(**extra_for_last) -> list[dict]:
    base = [{"path": f"train/a/{i}.jpg", "label": "a"} for i in range(3)]
    base[-1].update(extra_for_last)
    return base


def run(ctx):
    return CHECKS["integrity"].run(ctx)


def test_clean_files_pass():
    result = run(synthetic_context(items(), with_embeddings=False))
    assert result.status == Status.PASS and result.summary.startswith("all 3 files decode")


def test_a_decode_problem_is_a_finding_and_warns():
    broken = Problem("truncated", "error", "image file is truncated")
    result = run(synthetic_context(items(problems=[broken]), with_embeddings=False))
    assert result.status == Status.WARN
    [finding] = result.findings
    assert finding.evidence["kind"] == "truncated" and finding.severity == Severity.ERROR
    assert finding.paths == ["train/a/2.jpg"]
    assert result.metrics["unusable_files"] == 1 and result.metrics["findings_by_kind"] == {"truncated": 1}
    assert run(synthetic_context(items(problems=[broken]), with_embeddings=False,
                                 policy=Policy(integrity_max_findings=1))).status == Status.PASS


def test_walk_issues_are_findings_and_info_does_not_count():
    ctx = synthetic_context(items(), with_embeddings=False)
    ctx.index.issues.append(WalkIssue("README.md", "loose_file", "a file beside the split folders"))
    result = run(ctx)
    assert result.status == Status.PASS and result.findings[0].severity == Severity.INFO
    ctx.index.issues.append(WalkIssue("train/x/loop", "symlink_loop", "a link back to a folder above it"))
    assert run(ctx).status == Status.WARN


def test_an_extension_that_lies_is_reported():
    result = run(synthetic_context([{"path": "train/a/photo.png", "label": "a"}], with_embeddings=False))
    assert [f.evidence["kind"] for f in result.findings] == ["extension_mismatch"]


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
    result = integrity.CHECK.run(ctx)
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
    result = integrity.CHECK.run(ctx)
    assert result.metrics["unusable_files"] == 1
    assert [f.paths for f in result.findings if f.evidence["kind"] == "unstable_content"] == [["train/a/1.jpg"]]
    assert "nothing odd" not in result.summary


def test_a_record_without_a_scan_is_never_silent():
    ctx = _context()
    del ctx.encoded.scans[ctx.encoded.record_sha[0]]
    result = integrity.CHECK.run(ctx)
    assert result.metrics["unusable_files"] == 1
    assert [f.evidence["kind"] for f in result.findings if f.paths == ["train/a/0.jpg"]] == ["not_scanned"]


def test_the_summary_names_the_gravest_kinds_first_and_counts_the_rest():
    """Four loose notes and a tiny image must not push an unreadable file out of the summary's list."""
    ctx = synthetic_context(items(problems=[Problem("truncated", "error", "image file is truncated")]),
                            with_embeddings=False)
    ctx.index.issues += [WalkIssue(f"note{i}.txt", "loose_file", "a file beside the split folders") for i in range(4)]
    ctx.index.issues += [WalkIssue(f"n{i}", kind, "odd") for i, kind in
                         enumerate(["control_characters_in_name", "non_utf8_name", "empty_class_folder",
                                    "symlink_loop"])]
    summary = run(ctx).summary
    listed = summary[summary.index("(") + 1:]
    assert listed.startswith("1 truncated, ") and "loose file" not in listed and "2 other kinds)" in listed
