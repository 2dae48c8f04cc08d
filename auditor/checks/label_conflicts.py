"""`label_conflicts`: one image (exact or near copy) filed under two or more labels."""

from __future__ import annotations

from auditor.checks.common import group_id, members, plural, quoted_paths
from auditor.checks.duplicates import ALL_KINDS
from auditor.context import AuditContext
from auditor.report import CheckResult, Finding, Severity, Status


def conflicting_groups(ctx: AuditContext) -> list[list[int]]:
    return [g for g in ctx.record_groups(ALL_KINDS) if len({ctx.records[p].label for p in g}) > 1]


def run(ctx: AuditContext) -> CheckResult:
    groups = conflicting_groups(ctx)
    findings = []
    within = across = 0
    for group in groups:
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
                          "members": members(ctx, group), "pairs": ctx.group_evidence(group)},
            )
        )
    limit = ctx.config.policy.label_conflicts_max
    status = Status.FAIL if len(groups) > limit else Status.PASS
    summary = (
        f"{plural(len(groups), 'image')} {'carries' if len(groups) == 1 else 'carry'} two or more labels ({within} within a split, {across} across splits) "
        f"(policy: fail above {limit})"
        if groups
        else "no image carries two labels"
    )
    return CheckResult(
        id="label_conflicts",
        status=status,
        summary=summary,
        metrics={"groups": len(groups), "within_split": within, "across_splits": across,
                 "images_involved": sum(map(len, groups))},
        findings=findings,
    )
