"""`leakage`: the same image (exact or near) in training and in a held-out split.

A held-out image leaks when it has its *own* duplicate in train: groups are formed so that every two
members are duplicates (similarity/groups.py), so a held-out member of a group with a train member is
itself a duplicate of that train image, never merely linked to it through a chain of similar images."""

from __future__ import annotations

import numpy as np

from auditor.checks.common import group_id, listed_pairs, members, percent, plural, quoted_paths
from auditor.config import REFERENCE_SPLIT
from auditor.context import AuditContext
from auditor.similarity.describe import (crowding_text, decision_text, detection_quality, precision_text,
                                         recall_text)
from auditor.checks.base import Check, Evidence, Verdict, skipped
from auditor.config import Policy
from auditor.report import Finding, Severity, Status


def leaking_groups(ctx: AuditContext) -> list[list[int]]:
    groups = [g for g in ctx.duplicate_groups if len({ctx.records[p].split for p in g}) > 1]
    return groups + ctx.left_out_leaks


def leaked_positions(ctx: AuditContext) -> dict[str, set[int]]:
    """For each held-out split, its images that have a duplicate in train (or, with no train split,
    in any other split)."""
    leaked: dict[str, set[int]] = {s: set() for s in ctx.index.held_out_splits}
    has_train = ctx.index.reference_split is not None
    for group in leaking_groups(ctx):
        splits = {ctx.records[p].split for p in group}
        if has_train and REFERENCE_SPLIT not in splits:
            continue  # e.g. val and test share an image: a leak between held-out splits, not into training
        for p in group:
            if ctx.records[p].split != REFERENCE_SPLIT:
                leaked[ctx.records[p].split].add(p)
    return leaked


def chained_leaks(ctx: AuditContext, leaked: dict[str, set[int]]) -> int:
    """How many leaked held-out images are also in an accepted pair left out of the groups (DuplicateGraph.
    chained_edges): where look-alikes pass the rule, the copies understate false matches and the estimated
    precision is too high (bench_truth.py: digits, 0.85–0.99 estimated where 0.00–0.82 was found)."""
    chained_nodes = set(ctx.duplicate_graph.chained_edges().ravel().tolist())
    if not chained_nodes:
        return 0
    node_of = ctx.node_of_sha
    record_sha = ctx.encoded.record_sha
    return sum(1 for positions in leaked.values() for p in positions if node_of.get(record_sha[p]) in chained_nodes)


def compute(ctx: AuditContext) -> Evidence:
    splits = ctx.index.splits
    if len(splits) < 2:
        return skipped("one split only: nothing can leak (use --validation-split to reproduce a Keras split)")
    groups = leaking_groups(ctx)
    leaked = leaked_positions(ctx)
    columns = ctx.columns  # counted from the record columns, not a Python step per record (≈ 0.2–0.3 s at 10⁶)
    per_split: dict[str, dict] = {}
    worst_split, worst_share = None, 0.0
    for split, positions in leaked.items():
        in_split = columns.usable & (columns.split == columns.splits.index(split))
        images = np.bincount(columns.label[in_split], minlength=len(columns.classes))
        hits = np.bincount(columns.label[np.fromiter(positions, dtype=np.int64, count=len(positions))],
                           minlength=len(columns.classes))
        per_class = {columns.classes[code]: {"images": int(images[code]), "leaked": int(hits[code]),
                                             "percent": percent(int(hits[code]), int(images[code]))}
                     for code in np.flatnonzero(images).tolist()}
        total = int(images.sum())
        share = percent(len(positions), total)
        per_split[split] = {"images": total, "leaked": len(positions), "percent": share, "per_class": per_class}
        if share >= worst_share:
            worst_split, worst_share = split, share
    findings = []
    for group, pairs in zip(groups, ctx.groups_evidence(groups)):
        split_names = sorted({ctx.records[p].split for p in group})
        labels = sorted({ctx.records[p].label for p in group})
        findings.append(
            Finding(
                id=group_id(ctx, "leakage", "group", group),
                severity=Severity.ERROR,
                message=f"the same image is in {' and '.join(split_names)}"
                + (f" under labels {', '.join(labels)}" if len(labels) > 1 else "")
                + f": {quoted_paths(ctx, group)}",
                paths=[ctx.records[p].path for p in group],
                evidence={"members": members(ctx, group), **listed_pairs(pairs)},
            )
        )
    has_train = bool(ctx.index.reference_split)
    chained = chained_leaks(ctx, leaked)
    leak_estimate = ctx.duplicate_decision.leak
    quality = detection_quality(ctx, leak_estimate) if leak_estimate is not None else None
    if per_split and has_train:
        summary = "; ".join(f"{m['percent']} % of {s} images ({m['leaked']} of {m['images']}) have a duplicate in train"
                            for s, m in per_split.items())
        if quality is not None:
            summary += (f" (near duplicates at {decision_text(ctx)}: estimated recall "
                        f"{recall_text(quality)}"
                        + precision_text(quality) + crowding_text(quality) + ")")
        if chained:
            summary += (f"; {chained} of the leaked images also match images outside their group (look-alikes: "
                        "near_duplicates' chained pairs)"
                        + (", so the precision estimate may be too high"
                           if quality is not None and quality["precision"] is not None else ""))
    else:
        summary = f"{plural(len(groups), 'duplicate group')} span two or more splits"
    return Evidence(
        summary=summary,
        metrics={"groups": len(groups), "per_split": per_split, "worst_split": worst_split, "worst_percent": worst_share,
                 "has_train": has_train, "decision": decision_text(ctx), "detection_quality": quality,
                 "chained_leaked_images": chained},
        findings=findings,
    )


BLIND_RECALL = 0.5  # a decision whose estimated recall cannot reach this (its interval's top) cannot vouch for "no leak"


def judge(evidence: Evidence, policy: Policy) -> Verdict:
    """Fail when a held-out split's share with a train duplicate exceeds the policy (with no train split:
    any group spanning splits fails a zero limit). Otherwise pass — unless the duplicate decision is nearly
    blind on this dataset (its recall interval lies below BLIND_RECALL: e.g. every image a copy of every other,
    so no rule finds the calibration copies without matching everything): then a share under the limit proves
    nothing, and the check warns."""
    limit = policy.leakage_max_percent
    metrics = evidence.metrics
    failing = [s for s, m in metrics["per_split"].items() if m["percent"] > limit]
    if not metrics["has_train"] and metrics["groups"] and limit == 0:
        failing = failing or ["(between splits)"]
    quality = metrics.get("detection_quality") or {}
    interval = quality.get("recall_interval")
    blind = interval is not None and interval[1] is not None and interval[1] < BLIND_RECALL
    status = Status.FAIL if failing else Status.WARN if blind else Status.PASS
    text = f"fail above {limit} %" + (f"; warn when the estimated recall stays below {BLIND_RECALL:.0%}" if blind else "")
    return Verdict(status, policy=text)


CHECK = Check("leakage", compute, judge)
