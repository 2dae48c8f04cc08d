"""The checks, registered explicitly: id → function(AuditContext) → CheckResult. Order is report order."""

from __future__ import annotations

from typing import Callable

from auditor.checks import class_balance, duplicates, integrity, label_conflicts, leakage
from auditor.checks import shortcuts, split_shift
from auditor.checks import gap_attribution, reference_finetune
from auditor.checks import image_quality, label_issues, outliers

CHECKS: dict[str, Callable] = {
    "integrity": integrity.run,
    "exact_duplicates": duplicates.run_exact,
    "near_duplicates": duplicates.run_near,
    "leakage": leakage.run,
    "label_conflicts": label_conflicts.run,
    "class_balance": class_balance.run,
    "split_shift": split_shift.run,
    "shortcuts": shortcuts.run,
    "label_issues": label_issues.run,
    "outliers": outliers.run,
    "image_quality": image_quality.run,
    # Only with --finetune (skipped otherwise); last, so gap_attribution can read the other checks' evidence.
    "reference_finetune": reference_finetune.run,
    "gap_attribution": gap_attribution.run,
}
