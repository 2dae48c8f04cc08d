"""`class_balance`: images per class per split, imbalance, missing classes, and whether each held-out
split's label distribution differs from train's (chi-square test, Cramér's V)."""

from __future__ import annotations

import numpy as np

from auditor.config import REFERENCE_SPLIT
from auditor.context import AuditContext
from auditor.checks.base import Check, Evidence, Verdict
from auditor.checks.common import plural
from auditor.config import Policy
from auditor.report import Finding, Severity, Status, stable_finding_id


def count_table(ctx: AuditContext) -> tuple[list[str], list[str], np.ndarray]:
    """(splits, classes, counts[split, class]) over usable images."""
    columns = ctx.columns  # one pass over the records, shared with other checks; counted with bincount
    splits, classes = columns.splits, columns.classes
    cells = columns.split[columns.usable].astype(np.int64) * len(classes) + columns.label[columns.usable]
    counts = np.bincount(cells, minlength=len(splits) * len(classes)).reshape(len(splits), len(classes))
    return splits, classes, counts.astype(int)


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


def compute(ctx: AuditContext) -> Evidence:
    splits, classes, counts = count_table(ctx)
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
    reference = REFERENCE_SPLIT if REFERENCE_SPLIT in splits else splits[0]
    r = splits.index(reference)
    tests = {split: distribution_test(counts[r], counts[s]) for s, split in enumerate(splits) if split != reference}
    findings = [missing_finding(split, c, missing_from_train=split == reference)
                for split in splits for c in per_split[split]["missing_classes"]]
    ratio = per_split[reference]["imbalance_ratio"]
    parts = [f"{plural(len(classes), 'class', 'classes')}; {reference} imbalance ratio {ratio:.1f}" if ratio
             else plural(len(classes), "class", "classes")]
    for split, result in tests.items():
        if result["p_value"] is not None:
            parts.append(f"{split} vs {reference}: p = {result['p_value']:.2g}, V = {result['cramers_v']:.2f}")
    missing = sum(len(m["missing_classes"]) for m in per_split.values())
    if missing:
        parts.append(f"{missing} class/split combinations empty")
    return Evidence(
        summary="; ".join(parts),
        metrics={"classes": classes, "per_split": per_split, "reference_split": reference, "distribution_tests": tests},
        findings=findings,
    )


def missing_finding(split: str, label: str, missing_from_train: bool) -> Finding:
    return Finding(
        id=stable_finding_id("class_balance", "missing_class", [split, label]),
        severity=Severity.ERROR if missing_from_train else Severity.WARNING,
        message=f"class {label!r} has no images in {split}"
        + (": the model cannot learn it" if missing_from_train else ": its accuracy cannot be measured there"),
        paths=[],
        evidence={"split": split, "class": label},
    )


def judge(evidence: Evidence, policy: Policy) -> Verdict:
    """Fail when a class has no training images; warn on a train imbalance above the policy's ratio, on a
    class missing from a held-out split, and on a held-out label distribution that differs significantly
    and materially from train's."""
    metrics = evidence.metrics
    reference, per_split = metrics["reference_split"], metrics["per_split"]
    findings = list(evidence.findings)
    counts = per_split[reference]["classes"]
    largest = max(counts, key=counts.get) if counts else None  # the first of the largest classes
    for label, n in counts.items():
        if 0 < n and counts[largest] / n > policy.max_imbalance_ratio:
            findings.append(Finding(
                id=stable_finding_id("class_balance", "under_represented", [reference, label]),
                severity=Severity.WARNING,
                message=f"class {label!r} has {n} {reference} images, {counts[largest] / n:.1f}× fewer than "
                f"{largest!r} ({counts[largest]})",
                paths=[],
                evidence={"split": reference, "class": label, "images": n, "largest_class": largest,
                          "largest_images": counts[largest]},
            ))
    for split, result in metrics["distribution_tests"].items():
        if result["p_value"] is not None and result["p_value"] < policy.alpha and result["cramers_v"] >= policy.min_cramers_v:
            findings.append(Finding(
                id=stable_finding_id("class_balance", "distribution_differs", [split]),
                severity=Severity.WARNING,
                message=f"the label distribution of {split} differs from {reference}'s "
                f"(chi-square p = {result['p_value']:.2g}, Cramér's V = {result['cramers_v']:.2f})",
                paths=[],
                evidence={"split": split, **result},
            ))
    fail = bool(per_split[reference]["missing_classes"])  # its finding says it: the model cannot learn that class
    status = Status.FAIL if fail else Status.WARN if findings else Status.PASS
    rank = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    findings.sort(key=lambda f: rank[f.severity])
    return Verdict(status, policy=f"warn above ratio {policy.max_imbalance_ratio:g}", findings=findings)


CHECK = Check("class_balance", compute, judge)
