"""`audit NEW --against EXISTING`: audit incoming images against an existing dataset.

Both datasets are indexed (either may be a CSV manifest) and audited together as one index whose
paths start with `incoming/` or `existing/` (auditor/index/merged.py). The per-image checks run on the
union, so a leak between an incoming validation image and an existing training image is an ordinary
`leakage` finding; then findings that involve existing images only are *accepted* (they were there
before the merge), so only what the incoming images bring can fail the gate. The whole-dataset tests
(split_shift, shortcuts, label_issues) are not re-run over the union — the existing dataset's own audit
ran them — and the `merge` check compares the incoming images with the existing ones instead: copies,
leaks both ways, label conflicts, class balance before and after, the shift of the incoming embeddings
(domain classifier with a permutation p-value) and properties, and incoming labels that the existing
images they look like contradict.

Existing images cost nothing to re-audit: their scans and embeddings come from the cache (keyed by
content), and calibration samples the existing images only, as the existing dataset's own audit
did, so its transformed copies are cached too. Only incoming images are decoded and embedded.
"""

from __future__ import annotations

import copy

import numpy as np

from auditor.analysis.domain import subsample
from auditor.checks.base import Check, Evidence, Verdict
from auditor.checks.common import one_blas_thread
from auditor.checks.split_shift import drift_sentence, drifts, property_drift
from auditor.config import REFERENCE_SPLIT, Policy
from auditor.gate.incoming import LABEL_NEIGHBOURS, MIN_DISAGREEMENT, disagrees, neighbour_labels
from auditor.index.merged import EXISTING, INCOMING, MergedIndex
from auditor.report import Finding, Severity, Status, stable_finding_id

CHECK_ID = "merge"
MIN_PER_SIDE_FOR_AUC = 10
MAX_PER_SIDE = 2000  # embeddings per side of the incoming/existing comparison (seeded subsample)
MAX_SHIFT_PERMUTATIONS = 9999
EXISTING_PER_INCOMING = 10  # the shift test's existing side, per incoming image (see shift_test)
MIN_EXISTING_FOR_SHIFT = 200
MAX_EXISTING_FOR_LABELS = 200_000  # existing images searched for an incoming image's neighbours (seeded subsample)


def is_existing_only(finding: Finding) -> bool:
    return bool(finding.paths) and all(p.startswith(EXISTING + "/") for p in finding.paths)


def compute(ctx) -> Evidence:
    """What the incoming images change: duplicates, leaks both ways, label conflicts, balance, shift, and
    incoming labels that disagree with the existing images they look like."""
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
        "shift": _shift(ctx, usable) if ctx.has_embeddings else {},
        "property_drift": _property_drift(ctx, usable),
        "incoming_labels": _incoming_labels(ctx, usable) if ctx.has_embeddings else {},
    }
    problems = len(duplicates) + len(leaks_in) + len(leaks_out) + conflicts
    parts = [f"{metrics['incoming_images']} incoming images against {metrics['existing_images']} existing "
             f"({metrics['embeddings_computed']} embedded now)",
             f"{len(duplicates)} duplicate an existing image",
             f"{len(leaks_in)} incoming held-out images leak into existing train",
             f"{len(leaks_out)} existing held-out images leak into incoming train",
             f"{conflicts} label conflicts with existing images"]
    metrics["problems"] = problems
    return Evidence(summary="; ".join(parts), metrics=metrics)


def judge(evidence: Evidence, policy: Policy) -> Verdict:
    """Warn on what the incoming images bring: copies of existing images, leaks, conflicts, a shift from the
    existing images (p < alpha and AUC ≥ min_domain_auc), drifting properties, labels their neighbours contradict.
    New leaks and conflicts also fail `leakage` and `label_conflicts` themselves."""
    metrics = copy.deepcopy(evidence.metrics)
    findings: list[Finding] = []
    sentences = [evidence.summary]
    for split, entry in metrics["shift"].items():
        p_value, auc = entry.get("p_value"), entry.get("domain_auc")
        entry["shifted"] = bool(p_value is not None and p_value < policy.alpha and auc >= policy.min_domain_auc)
        if entry["shifted"]:
            findings.append(Finding(
                id=stable_finding_id(CHECK_ID, "incoming_shift", [split]),
                severity=Severity.WARNING,
                message=f"incoming {split} images look different from the existing ones: a classifier tells them "
                f"apart with ROC-AUC {auc:.2f} (permutation p = {p_value:.2g}; policy: warn when p < {policy.alpha:g} "
                f"and AUC ≥ {policy.min_domain_auc:g})",
                paths=[], evidence={"split": split, **entry}))
    aucs = {s: v["domain_auc"] for s, v in metrics["shift"].items() if v.get("domain_auc") is not None}
    if aucs:
        sentences.append("incoming vs existing domain AUC " + ", ".join(f"{s} {a:.2f}" for s, a in aucs.items()))
    drifting = {name: d for name, d in metrics["property_drift"].items() if drifts(d, policy)}
    for name, d in sorted(drifting.items(), key=lambda item: -item[1]["effect"]):
        d["drifts"] = True
        findings.append(Finding(
            id=stable_finding_id(CHECK_ID, "incoming_property_drift", [name]), severity=Severity.WARNING,
            message=drift_sentence("incoming", "existing", {name: d}), paths=[],
            evidence={"property": name, **d}))
    if drifting:
        sentences.append(drift_sentence("incoming", "existing", drifting))
    for path, entry in sorted(metrics["incoming_labels"].items()):
        if disagrees(entry):
            findings.append(Finding(
                id=stable_finding_id(CHECK_ID, "incoming_label_disagrees", [entry["sha"]]), severity=Severity.WARNING,
                message=f"{path}: labelled {entry['label']!r}, but {entry['other_label_share']:.0%} of the "
                f"{entry['neighbours']} existing images most like it are {entry['other_label']!r}",
                paths=[path], evidence=entry))
    disagreeing = sum(disagrees(e) for e in metrics["incoming_labels"].values())
    if metrics["incoming_labels"]:
        sentences.append(f"{disagreeing} incoming labels disagree with their {LABEL_NEIGHBOURS} nearest existing images")
    warned = metrics["problems"] > 0 or bool(findings)
    return Verdict(Status.WARN if warned else Status.PASS, summary="; ".join(sentences), findings=findings,
                   metrics=metrics,
                   policy=f"warn on copies, leaks, conflicts, shift (p < {policy.alpha:g}, AUC ≥ {policy.min_domain_auc:g}), "
                          f"drift or labels ≥ {MIN_DISAGREEMENT:.0%} of their neighbours contradict")


CHECK = Check(CHECK_ID, compute, judge, evidence_policy=("alpha",))


def _counts(ctx, positions: list[int]) -> dict:
    table: dict[str, dict] = {}
    classes = ctx.index.classes  # a property that walks every record: once, not once per record
    for p in positions:
        record = ctx.records[p]
        split = table.setdefault(record.split, {"images": 0, "classes": dict.fromkeys(classes, 0)})
        split["images"] += 1
        split["classes"][record.label] += 1
    return table


def _sides(ctx, usable: set[int], split: str | None) -> dict[str, list[str]]:
    """Per origin, the unique contents with an embedding (of one split, or all), seeded subsample."""
    index: MergedIndex = ctx.index
    rng = np.random.default_rng(ctx.config.seed or 0)
    sides = {}
    for origin in (INCOMING, EXISTING):
        shas = list(dict.fromkeys(ctx.encoded.record_sha[p] for p in index.positions(origin)
                                  if p in usable and (split is None or ctx.records[p].split == split)))
        sides[origin] = subsample([s for s in shas if s in ctx.encoded.embeddings], MAX_PER_SIDE, rng)
    return sides


def _shift(ctx, usable: set[int]) -> dict:
    """Per split: the incoming against the existing embeddings (`shift_test`), on the audit's seed."""
    from auditor.stats import MIN_CLASSIFIER_PERMUTATIONS, permutations_for

    seed = ctx.config.seed or 0
    alpha = ctx.config.policy.alpha
    permutations = max(MIN_CLASSIFIER_PERMUTATIONS, permutations_for(alpha, 1, MAX_SHIFT_PERMUTATIONS))
    result: dict[str, dict] = {}
    for split in ctx.index.splits:
        sides = _sides(ctx, usable, split)
        if not sides[INCOMING] or not sides[EXISTING]:
            continue
        result[split] = shift_test(ctx.unit_embeddings(sides[INCOMING]), ctx.unit_embeddings(sides[EXISTING]),
                                   permutations, seed)
    return result


def shift_test(incoming: np.ndarray, existing: np.ndarray, permutations: int, seed: int) -> dict:
    """Cosine distance between the incoming and existing centroids, and whether a classifier tells incoming
    from existing embeddings (split_shift's domain classifier: cross-validated ROC-AUC, 0.5 =
    indistinguishable, with a permutation p-value).

    The existing side is subsampled to EXISTING_PER_INCOMING × the incoming side (at least
    MIN_EXISTING_FOR_SHIFT): a two-sample test's power is set by the smaller side, so 30 incoming images
    against 300 existing keep 92 % of the effective sample size of 30 against 2 000 (2 / (1/30 + 1/300)
    against 2 / (1/30 + 1/2000)), and the permutations fit a tenth of the rows."""
    from auditor.stats import domain_classifier_test

    keep = max(MIN_EXISTING_FOR_SHIFT, EXISTING_PER_INCOMING * len(incoming))
    if len(existing) > keep:
        existing = existing[np.sort(np.random.default_rng(seed).choice(len(existing), keep, replace=False))]
    ca, cb = incoming.mean(axis=0), existing.mean(axis=0)
    distance = 1.0 - float(ca @ cb / (np.linalg.norm(ca) * np.linalg.norm(cb) + 1e-12))
    entry = {"incoming": len(incoming), "existing": len(existing), "centroid_cosine_distance": round(distance, 4),
             "domain_auc": None, "p_value": None}
    if min(len(incoming), len(existing)) >= MIN_PER_SIDE_FOR_AUC:
        with one_blas_thread():
            test = domain_classifier_test(existing, incoming, permutations, seed)
        entry.update(domain_auc=round(float(test.auc), 4), p_value=float(f"{test.p_value:.4g}"),
                     permutations=test.permutations)
    return entry


def _property_drift(ctx, usable: set[int]) -> dict:
    """Image properties of the incoming images against the existing ones (size, brightness, format, …)."""
    index: MergedIndex = ctx.index
    scans = {origin: [ctx.encoded.scans[ctx.encoded.record_sha[p]] for p in index.positions(origin) if p in usable]
             for origin in (INCOMING, EXISTING)}
    if min(len(scans[INCOMING]), len(scans[EXISTING])) < MIN_PER_SIDE_FOR_AUC:
        return {}
    return property_drift(scans[EXISTING], scans[INCOMING])


def _incoming_labels(ctx, usable: set[int]) -> dict[str, dict]:
    """Each incoming image's label against its nearest existing images' labels (path → evidence)."""
    index: MergedIndex = ctx.index
    existing = [p for p in index.positions(EXISTING) if p in usable and ctx.encoded.record_sha[p] in ctx.encoded.embeddings]
    incoming = [p for p in index.positions(INCOMING) if p in usable and ctx.encoded.record_sha[p] in ctx.encoded.embeddings]
    if not existing or not incoming:
        return {}
    rng = np.random.default_rng(ctx.config.seed or 0)
    existing = subsample(existing, MAX_EXISTING_FOR_LABELS, rng)
    existing_unit = ctx.unit_embeddings([ctx.encoded.record_sha[p] for p in existing])
    incoming_unit = ctx.unit_embeddings([ctx.encoded.record_sha[p] for p in incoming])
    found = neighbour_labels(existing_unit, [ctx.records[p].label for p in existing], incoming_unit,
                             [ctx.records[p].label for p in incoming])
    return {ctx.records[p].path: {**entry, "label": ctx.records[p].label, "sha": ctx.encoded.record_sha[p]}
            for p, entry in zip(incoming, found)}
