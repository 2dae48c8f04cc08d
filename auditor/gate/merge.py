"""`audit NEW --against EXISTING`: audit incoming images against an existing dataset.

Both datasets are indexed (either may be a CSV manifest) and audited together as one index whose
paths start with `incoming/` or `existing/`. Every check runs on the union, so a leak between an
incoming validation image and an existing training image is an ordinary `leakage` finding; then
findings that involve existing images only are *accepted* (they were there before the merge), so
only what the incoming images bring can fail the gate. The `merge` check summarises what changed:
duplicates of existing images, leaks in both directions, label conflicts, class balance before and
after, and how far the incoming images sit from the existing ones in embedding space.

Existing images cost nothing to re-audit: their scans and embeddings come from the cache (keyed by
content), and calibration samples the existing images only, as the existing dataset's own audit
did, so its transformed copies are cached too. Only incoming images are decoded and embedded.
"""

from __future__ import annotations

import numpy as np

from auditor.analysis.domain import subsample
from auditor.config import REFERENCE_SPLIT
from auditor.index.merged import EXISTING, INCOMING, MergedIndex
from auditor.report import CheckResult, Finding, Status

CHECK_ID = "merge"
MIN_PER_SIDE_FOR_AUC = 10
MAX_PER_SIDE = 2000  # embeddings per side of the incoming/existing comparison (seeded subsample)


def is_existing_only(finding: Finding) -> bool:
    return bool(finding.paths) and all(p.startswith(EXISTING + "/") for p in finding.paths)


def merge_check(ctx) -> CheckResult:
    """What the incoming images change: duplicates, leaks both ways, label conflicts, balance, shift."""
    index: MergedIndex = ctx.index
    records, origins = ctx.records, index.origins
    groups = ctx.duplicate_groups
    cross = [g for g in groups if {origins[p] for p in g} == {INCOMING, EXISTING}]
    duplicates = sorted({p for g in cross for p in g if origins[p] == INCOMING})
    leaks_in, leaks_out = set(), set()
    conflicts = 0
    for group in cross:
        existing_train = any(origins[p] == EXISTING and records[p].split == REFERENCE_SPLIT for p in group)
        incoming_train = any(origins[p] == INCOMING and records[p].split == REFERENCE_SPLIT for p in group)
        for p in group:
            if records[p].split == REFERENCE_SPLIT:
                continue
            if origins[p] == INCOMING and existing_train:
                leaks_in.add(p)
            if origins[p] == EXISTING and incoming_train:
                leaks_out.add(p)
        conflicts += len({records[p].label for p in group}) > 1
    usable = set(ctx.usable_positions)
    balance = {"before": _counts(ctx, [p for p in index.positions(EXISTING) if p in usable]),
               "incoming": _counts(ctx, [p for p in index.positions(INCOMING) if p in usable]),
               "after": _counts(ctx, sorted(usable))}
    for side in balance.values():
        for split in side.values():
            present = [n for n in split["classes"].values() if n]
            split["imbalance_ratio"] = round(max(present) / min(present), 3) if present else None
    shift = _shift(ctx, usable) if ctx.has_embeddings else {}
    metrics = {
        "incoming_images": origins.count(INCOMING),
        "existing_images": origins.count(EXISTING),
        "embeddings_computed": int(ctx.encoded.stats.get("embeddings_computed", 0)),
        "incoming_duplicating_existing": len(duplicates),
        "incoming_held_out_leaking_into_existing_train": len(leaks_in),
        "existing_held_out_leaking_into_incoming_train": len(leaks_out),
        "label_conflicts_with_existing": conflicts,
        "duplicate_paths": [records[p].path for p in duplicates[:100]],
        "class_balance": balance,
        "shift": shift,
    }
    problems = len(duplicates) + len(leaks_in) + len(leaks_out) + conflicts
    parts = [f"{metrics['incoming_images']} incoming images against {metrics['existing_images']} existing "
             f"({metrics['embeddings_computed']} embedded now)",
             f"{len(duplicates)} duplicate an existing image",
             f"{len(leaks_in)} incoming held-out images leak into existing train",
             f"{len(leaks_out)} existing held-out images leak into incoming train",
             f"{conflicts} label conflicts with existing images"]
    aucs = {s: v["domain_auc"] for s, v in shift.items() if v.get("domain_auc") is not None}
    if aucs:
        parts.append("incoming vs existing domain AUC " + ", ".join(f"{s} {a:.2f}" for s, a in aucs.items()))
    return CheckResult(id=CHECK_ID, status=Status.WARN if problems else Status.PASS, summary="; ".join(parts),
                       metrics=metrics)


def _counts(ctx, positions: list[int]) -> dict:
    table: dict[str, dict] = {}
    for p in positions:
        record = ctx.records[p]
        split = table.setdefault(record.split, {"images": 0, "classes": {c: 0 for c in ctx.index.classes}})
        split["images"] += 1
        split["classes"][record.label] += 1
    return table


def _shift(ctx, usable: set[int]) -> dict:
    """Per split: cosine distance between the incoming and existing centroids, and how well a classifier
    tells incoming from existing embeddings (split_shift's domain classifier: cross-validated ROC-AUC,
    0.5 = indistinguishable), on the audit's seed."""
    from auditor.stats import domain_classifier_test

    index: MergedIndex = ctx.index
    seed = ctx.config.seed or 0
    rng = np.random.default_rng(seed)
    result: dict[str, dict] = {}
    for split in ctx.index.splits:
        sides = {}
        for origin in (INCOMING, EXISTING):
            shas = list(dict.fromkeys(ctx.encoded.record_sha[p] for p in index.positions(origin)
                                      if p in usable and ctx.records[p].split == split))
            sides[origin] = subsample([s for s in shas if s in ctx.encoded.embeddings], MAX_PER_SIDE, rng)
        if not sides[INCOMING] or not sides[EXISTING]:
            continue
        a, b = ctx.unit_embeddings(sides[INCOMING]), ctx.unit_embeddings(sides[EXISTING])
        ca, cb = a.mean(axis=0), b.mean(axis=0)
        distance = 1.0 - float(ca @ cb / (np.linalg.norm(ca) * np.linalg.norm(cb) + 1e-12))
        entry = {"incoming": len(a), "existing": len(b), "centroid_cosine_distance": round(distance, 4),
                 "domain_auc": None}
        if min(len(a), len(b)) >= MIN_PER_SIDE_FOR_AUC:
            entry["domain_auc"] = round(float(domain_classifier_test(b, a, 0, seed).auc), 4)
        result[split] = entry
    return result
