"""The checks, registered explicitly: id → Check(compute, judge). Order is report order only: checks share
intermediate results through the context's lazily computed values, so any order computes the same."""

from __future__ import annotations

from auditor.checks import class_balance, duplicates, integrity, label_conflicts, leakage
from auditor.checks import shortcuts, split_shift
from auditor.checks import gap_attribution, reference_finetune
from auditor.checks import image_quality, label_issues, outliers
from auditor.checks.base import Check

CHECKS: dict[str, Check] = {check.id: check for check in (
    integrity.CHECK,
    duplicates.EXACT_CHECK,
    duplicates.NEAR_CHECK,
    leakage.CHECK,
    label_conflicts.CHECK,
    class_balance.CHECK,
    split_shift.CHECK,
    shortcuts.CHECK,
    label_issues.CHECK,
    outliers.CHECK,
    image_quality.CHECK,
    reference_finetune.CHECK,  # these two only with --finetune (skipped otherwise)
    gap_attribution.CHECK,
)}


def parse_check_ids(checks: str | list[str] | None) -> list[str] | None:
    """The check ids asked for (a comma list or a list), checked now rather than after the embedding."""
    from auditor.errors import ConfigError

    if checks is None:
        return None
    items = checks.split(",") if isinstance(checks, str) else list(checks)
    ids = [c.strip() for c in items if isinstance(c, str) and c.strip()]
    unknown = [c for c in ids if c not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown check id(s): {', '.join(unknown)}", f"Known checks: {', '.join(CHECKS)}.")
    return ids or None
