"""integrity: walk issues, unreadable files and decode problems become findings; the policy counts them."""

from __future__ import annotations

from auditor.checks import CHECKS
from auditor.config import Policy
from auditor.encoding.imaging import Problem
from auditor.index.dataset import WalkIssue
from auditor.report import Severity, Status
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
