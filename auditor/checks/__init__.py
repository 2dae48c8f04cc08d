"""The checks, registered explicitly: id → function(AuditContext) → CheckResult. Order is report order."""

from __future__ import annotations

from typing import Callable

from auditor.checks import class_balance, duplicates, integrity, label_conflicts, leakage
from auditor.checks import shortcuts, split_shift

CHECKS: dict[str, Callable] = {
    "integrity": integrity.run,
    "exact_duplicates": duplicates.run_exact,
    "near_duplicates": duplicates.run_near,
    "leakage": leakage.run,
    "label_conflicts": label_conflicts.run,
    "class_balance": class_balance.run,
    "split_shift": split_shift.run,
    "shortcuts": shortcuts.run,
}
