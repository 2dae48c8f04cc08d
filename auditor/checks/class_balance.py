"""`class_balance`: images per class per split, imbalance, missing classes, and whether each held-out
split's label distribution differs from train's (chi-square test, Cramér's V)."""

from __future__ import annotations


import numpy as np

from auditor.config import REFERENCE_SPLIT
from auditor.context import AuditContext
from auditor.report import CheckResult, Finding, Severity, Status, stable_finding_id


def count_table(ctx: AuditContext) -> tuple[list[str], list[str], np.ndarray]:
    """(splits, classes, counts[split, class]) over usable images."""
    splits, classes = ctx.index.splits, ctx.index.classes
    counts = np.zeros((len(splits), len(classes)), dtype=int)
    for p in ctx.usable_positions:
        record = ctx.records[p]
        counts[splits.index(record.split), classes.index(record.label)] += 1
    return splits, classes, counts


def distribution_test(reference: np.ndarray, held_out: np.ndarray) -> dict:
    """Chi-square test of homogeneity between two count vectors, with Cramér's V as the effect size."""
    from scipy.stats import chi2_contingency
    from scipy.stats.contingency import association

    keep = (reference + held_out) > 0
    table = np.stack([reference[keep], held_out[keep]])
    if table.shape[1] < 2 or table.sum(axis=1).min() == 0:
        return {"chi2": None, "p_value": None, "dof": None, "cramers_v": None}
    chi2, p_value, dof, _expected = chi2_contingency(table, correction=False)
    return {
        "chi2": round(float(chi2), 4),
        "p_value": float(f"{p_value:.4g}"),
        "dof": int(dof),
        "cramers_v": round(float(association(table, method="cramer")), 4),
    }


def run(ctx: AuditContext) -> CheckResult:
    splits, classes, counts = count_table(ctx)
    policy = ctx.config.policy
    findings: list[Finding] = []
    per_split = {}
    for s, split in enumerate(splits):
        present = counts[s][counts[s] > 0]
        ratio = float(present.max() / present.min()) if present.size else None
        per_split[split] = {
            "images": int(counts[s].sum()),
            "classes": {c: int(counts[s, k]) for k, c in enumerate(classes)},
            "imbalance_ratio": round(ratio, 3) if ratio is not None else None,
            "missing_classes": [c for k, c in enumerate(classes) if counts[s, k] == 0],
        }
    fail = warn = False
    reference = REFERENCE_SPLIT if REFERENCE_SPLIT in splits else splits[0]
    r = splits.index(reference)
    ratio = per_split[reference]["imbalance_ratio"]
    if ratio is not None and ratio > policy.max_imbalance_ratio:
        warn = True
        largest = classes[int(np.argmax(np.where(counts[r] > 0, counts[r], -1)))]
        for k, c in enumerate(classes):
            if 0 < counts[r, k] and counts[r].max() / counts[r, k] > policy.max_imbalance_ratio:
                findings.append(
                    Finding(
                        id=stable_finding_id("class_balance", "under_represented", [reference, c]),
                        severity=Severity.WARNING,
                        message=f"class {c!r} has {counts[r, k]} {reference} images, "
                        f"{counts[r].max() / counts[r, k]:.1f}× fewer than {largest!r} ({counts[r].max()})",
                        paths=[],
                        evidence={"split": reference, "class": c, "images": int(counts[r, k]),
                                  "largest_class": largest, "largest_images": int(counts[r].max())},
                    )
                )
    for s, split in enumerate(splits):
        for c in per_split[split]["missing_classes"]:
            missing_from_train = split == reference
            fail |= missing_from_train and len(splits) > 1
            warn = True
            findings.append(
                Finding(
                    id=stable_finding_id("class_balance", "missing_class", [split, c]),
                    severity=Severity.ERROR if missing_from_train else Severity.WARNING,
                    message=f"class {c!r} has no images in {split}"
                    + (": the model cannot learn it" if missing_from_train else ": its accuracy cannot be measured there"),
                    paths=[],
                    evidence={"split": split, "class": c},
                )
            )
    tests = {}
    for s, split in enumerate(splits):
        if split == reference:
            continue
        result = distribution_test(counts[r], counts[s])
        tests[split] = result
        if result["p_value"] is not None and result["p_value"] < policy.alpha and result["cramers_v"] >= policy.min_cramers_v:
            warn = True
            findings.append(
                Finding(
                    id=stable_finding_id("class_balance", "distribution_differs", [split]),
                    severity=Severity.WARNING,
                    message=f"the label distribution of {split} differs from {reference}'s "
                    f"(chi-square p = {result['p_value']:.2g}, Cramér's V = {result['cramers_v']:.2f})",
                    paths=[],
                    evidence={"split": split, **result},
                )
            )
    status = Status.FAIL if fail else Status.WARN if warn else Status.PASS
    parts = [f"{len(classes)} classes; {reference} imbalance ratio {ratio:.1f}" if ratio else f"{len(classes)} classes"]
    for split, result in tests.items():
        if result["p_value"] is not None:
            parts.append(f"{split} vs {reference}: p = {result['p_value']:.2g}, V = {result['cramers_v']:.2f}")
    missing = sum(len(m["missing_classes"]) for m in per_split.values())
    if missing:
        parts.append(f"{missing} class/split combinations empty")
    summary = "; ".join(parts) + f" (policy: warn above ratio {policy.max_imbalance_ratio:g})"
    return CheckResult(
        id="class_balance",
        status=status,
        summary=summary,
        metrics={"classes": classes, "per_split": per_split, "reference_split": reference,
                 "distribution_tests": tests},
        findings=findings,
    )


