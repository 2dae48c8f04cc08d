"""`label_conflicts`: one image (exact or near copy) filed under two or more labels."""

from __future__ import annotations

from auditor.checks.common import group_id, listed_pairs, members, plural, quoted_paths
from auditor.context import AuditContext
from auditor.checks.base import Check, Evidence, Verdict
from auditor.config import Policy
from auditor.report import Finding, Severity, Status


def conflicting_groups(ctx: AuditContext) -> list[list[int]]:
    return [g for g in ctx.duplicate_groups if len({ctx.records[p].label for p in g}) > 1]


def compute(ctx: AuditContext) -> Evidence:
    groups = conflicting_groups(ctx)
    findings = []
    within = across = 0
    for group, pairs in zip(groups, ctx.groups_evidence(groups)):
        labels = sorted({ctx.records[p].label for p in group})
        splits = sorted({ctx.records[p].split for p in group})
        scope = "within " + splits[0] if len(splits) == 1 else "across " + " and ".join(splits)
        within += len(splits) == 1
        across += len(splits) > 1
        findings.append(
            Finding(
                id=group_id(ctx, "label_conflicts", "group", group),
                severity=Severity.ERROR,
                message=f"one image under labels {', '.join(labels)} ({scope}): {quoted_paths(ctx, group)}",
                paths=[ctx.records[p].path for p in group],
                evidence={"labels": labels, "scope": "within_split" if len(splits) == 1 else "across_splits",
                          "members": members(ctx, group), **listed_pairs(pairs)},
            )
        )
    summary = (
        f"{plural(len(groups), 'image')} {'carries' if len(groups) == 1 else 'carry'} two or more labels "
        f"({within} within a split, {across} across splits)"
        if groups
        else "no image carries two labels"
    )
    return Evidence(
        summary=summary,
        metrics={"groups": len(groups), "within_split": within, "across_splits": across,
                 "images_involved": sum(map(len, groups))},
        findings=findings,
    )


def judge(evidence: Evidence, policy: Policy) -> Verdict:
    limit = policy.label_conflicts_max
    status = Status.FAIL if evidence.metrics["groups"] > limit else Status.PASS
    return Verdict(status, policy=f"fail above {limit}" if evidence.metrics["groups"] else "")


CHECK = Check("label_conflicts", compute, judge)
