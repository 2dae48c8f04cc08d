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

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from auditor.config import REFERENCE_SPLIT, AuditConfig
from auditor.index.dataset import DatasetIndex, WalkIssue, load_dataset
from auditor.report import CheckResult, Finding, Status

INCOMING, EXISTING = "incoming", "existing"
CHECK_ID = "merge"
MIN_PER_SIDE_FOR_AUC = 10


@dataclass
class MergedIndex(DatasetIndex):
    """The union of two datasets; `origins[i]` says whether record i is incoming or existing."""

    origins: list[str] = field(default_factory=list)
    roots: dict[str, str] = field(default_factory=dict)

    @property
    def calibration_positions(self) -> list[int]:
        return [i for i, origin in enumerate(self.origins) if origin == EXISTING]

    def positions(self, origin: str) -> list[int]:
        return [i for i, o in enumerate(self.origins) if o == origin]

    def summary(self) -> dict:
        base = super().summary()
        base["against"] = {
            "incoming_root": self.roots[INCOMING],
            "existing_root": self.roots[EXISTING],
            "incoming_images": self.origins.count(INCOMING),
            "existing_images": self.origins.count(EXISTING),
        }
        return base


def load_one(path: Path, config: AuditConfig) -> DatasetIndex:
    """A dataset folder, or a manifest file (paths relative to the manifest's folder)."""
    path = Path(path).expanduser()
    if path.is_file():
        return load_dataset(path.parent, replace(config, manifest=path, validation_split=None))
    return load_dataset(path, replace(config, manifest=None))


def load_merged(incoming_dir: Path, existing: Path, config: AuditConfig) -> MergedIndex:
    """Index both datasets into one (existing first, so its records keep their order)."""
    incoming_index = load_dataset(Path(incoming_dir).expanduser(), config)
    existing_index = load_one(existing, config)
    merged = MergedIndex(root=incoming_index.root, layout=f"{incoming_index.layout} against {existing_index.layout}",
                         records=[], roots={INCOMING: str(incoming_index.root), EXISTING: str(existing_index.root)})
    for origin, index in ((EXISTING, existing_index), (INCOMING, incoming_index)):
        for record in index.records:
            merged.records.append(replace(record, path=f"{origin}/{record.path}"))
            merged.origins.append(origin)
        merged.issues.extend(WalkIssue(f"{origin}/{i.path}", i.kind, i.message) for i in index.issues)
        merged.notes.extend(f"{origin}: {note}" for note in index.notes)
    merged.notes.append(
        f"Merge audit: {merged.origins.count(INCOMING)} incoming images ({incoming_index.root}) against "
        f"{merged.origins.count(EXISTING)} existing ({existing_index.root}); findings among existing images only "
        "are accepted."
    )
    return merged


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
    """Per split: cosine distance between the incoming and existing centroids, and how well a linear
    classifier tells incoming from existing embeddings (cross-validated ROC-AUC; 0.5 = indistinguishable)."""
    index: MergedIndex = ctx.index
    result: dict[str, dict] = {}
    rng = np.random.default_rng(0)
    for split in ctx.index.splits:
        sides = {}
        for origin in (INCOMING, EXISTING):
            shas = list(dict.fromkeys(ctx.encoded.record_sha[p] for p in index.positions(origin)
                                      if p in usable and ctx.records[p].split == split))
            shas = [s for s in shas if s in ctx.encoded.embeddings]
            if len(shas) > 2000:
                shas = [shas[i] for i in sorted(rng.choice(len(shas), 2000, replace=False))]
            sides[origin] = shas
        if not sides[INCOMING] or not sides[EXISTING]:
            continue
        a, b = ctx.unit_embeddings(sides[INCOMING]), ctx.unit_embeddings(sides[EXISTING])
        ca, cb = a.mean(axis=0), b.mean(axis=0)
        distance = 1.0 - float(ca @ cb / (np.linalg.norm(ca) * np.linalg.norm(cb) + 1e-12))
        entry = {"incoming": len(a), "existing": len(b), "centroid_cosine_distance": round(distance, 4),
                 "domain_auc": None}
        if min(len(a), len(b)) >= MIN_PER_SIDE_FOR_AUC:
            entry["domain_auc"] = _domain_auc(a, b)
        result[split] = entry
    return result


def _domain_auc(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = np.concatenate([a, b])
    y = np.concatenate([np.ones(len(a)), np.zeros(len(b))])
    folds = StratifiedKFold(n_splits=min(5, len(a), len(b)), shuffle=True, random_state=0)
    scores = cross_val_predict(LogisticRegression(max_iter=1000, class_weight="balanced"), x, y, cv=folds,
                               method="predict_proba")[:, 1]
    return round(float(roc_auc_score(y, scores)), 4)
