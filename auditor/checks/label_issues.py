"""`label_issues`: images whose given label their own embedding contradicts.

Two independent signals, both from the cached embeddings (no image file is read again):

- a linear probe (logistic regression on the backbone features), cross-validated with stratified,
  seeded folds, gives every image out-of-fold class probabilities; confident learning (Northcutt,
  Jiang & Chuang, JAIR 2021) turns them into a set of probable label errors: per-class thresholds
  (the average self-confidence of each class) give the confident joint, whose calibrated off-diagonal
  estimates how many labels are wrong (and which classes are filed as which); that many images are
  flagged, lowest self-confidence first;
- the share of the image's k nearest neighbours (FAISS, cosine) that carry its label.

A finding is a `warning` when all signals agree (flagged, the probe confident in another class above
that class's threshold, most neighbours carrying another label) and `info` otherwise.

Folds run over unique contents: copies of one file (same sha256) are one sample, so a copy never
sits on both sides of a fold; a content filed under two labels is two samples kept in one fold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from auditor.checks.common import percent, plural
from auditor.context import AuditContext
from auditor.checks.base import self_judged
from auditor.report import CheckResult, Finding, Severity, Status, stable_finding_id

CHECK_ID = "label_issues"
MIN_IMAGES_PER_CLASS = 10  # fewer images than this: the probe cannot learn the class (≤ 8 per training fold), so it is not judged
# Inverse L2 strength of the probe on unit-length embeddings. Strong regularisation keeps the probe from
# memorising the wrong labels it is meant to find: on cats/dogs with 10 % flipped labels, C = 1 gives
# confident learning precision 0.97 where standardised features with C = 0.1 give 0.55
# (bench/bench_label_issues.py).
PROBE_C = 1.0
MAX_SHOWN_PAIRS = 20


# ---------------------------------------------------------------------------------------------
# Confident learning: pure numpy on (probabilities, given labels)
# ---------------------------------------------------------------------------------------------


def per_class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """t_j = the average probability of class j over the images labelled j (its self-confidence)."""
    n_classes = probs.shape[1]
    thresholds = np.ones(n_classes)
    for j in range(n_classes):
        members = labels == j
        if members.any():
            thresholds[j] = float(probs[members, j].mean())
    return thresholds


def confident_joint(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | None = None) -> np.ndarray:
    """C[i, j]: images labelled i whose probability of class j reaches t_j (the likeliest such j
    when several do). Images confident in no class are not counted."""
    n_classes = probs.shape[1]
    if thresholds is None:
        thresholds = per_class_thresholds(probs, labels)
    confident = probs >= thresholds[None, :] - 1e-9
    counted = confident.any(axis=1)
    guess = np.where(confident, probs, -np.inf).argmax(axis=1)
    joint = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(joint, (labels[counted], guess[counted]), 1)
    return joint


def calibrate_confident_joint(joint: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rescale each row so it sums to the number of images that carry that label (float counts)."""
    n_classes = joint.shape[0]
    label_counts = np.bincount(labels, minlength=n_classes).astype(float)
    row_sums = joint.sum(axis=1).astype(float)
    scale = np.divide(label_counts, row_sums, out=np.zeros(n_classes), where=row_sums > 0)
    calibrated = joint * scale[:, None]
    empty = row_sums == 0  # a class confident nowhere keeps its images on the diagonal
    calibrated[empty, empty] = label_counts[empty]
    return calibrated


def noise_matrix(calibrated: np.ndarray) -> np.ndarray:
    """Row-normalised calibrated joint: [i, j] = estimated share of images labelled i whose true class is j."""
    rows = calibrated.sum(axis=1, keepdims=True)
    return np.divide(calibrated, rows, out=np.zeros_like(calibrated), where=rows > 0)


def estimated_label_errors(probs: np.ndarray, labels: np.ndarray) -> int:
    """How many labels confident learning estimates to be wrong: the off-diagonal mass of the calibrated
    confident joint."""
    calibrated = calibrate_confident_joint(confident_joint(probs, labels), labels)
    return int(np.rint(calibrated.sum() - np.trace(calibrated)))


def find_label_issues(probs: np.ndarray, labels: np.ndarray, method: str = "low_self_confidence") -> np.ndarray:
    """Boolean mask of probable label errors by confident learning. An image whose likeliest class is its
    given label is never flagged.

    `low_self_confidence` (default): the confident joint estimates how many labels are wrong; that many
    images are flagged, lowest self-confidence first (cleanlab's `filter_by="low_self_confidence"`).
    `prune_by_noise_rate`: for every pair (given i, true j ≠ i) the calibrated confident joint estimates
    how many images labelled i are really j; that many images labelled i are flagged, largest margin
    p_j − p_i first (the original paper's method).

    On real photos with flipped labels the first is the more precise (bench/bench_label_issues.py: 4 classes,
    5 % flipped: precision 0.95 vs 0.91 at the same recall or better)."""
    n, n_classes = probs.shape
    candidates = probs.argmax(axis=1) != labels
    issues = np.zeros(n, dtype=bool)
    if method == "low_self_confidence":
        count = estimated_label_errors(probs, labels)
        quality = self_confidence(probs, labels)
        order = np.argsort(quality, kind="stable")
        issues[order[candidates[order]][:count]] = True
        for i in range(n_classes):  # never empty a class: a class that is all noise is not a label error
            members = np.flatnonzero(labels == i)
            if members.size and issues[members].all():
                issues[members[np.argmax(quality[members])]] = False
        return issues
    if method != "prune_by_noise_rate":
        raise ValueError(f"unknown method {method!r}")
    thresholds = per_class_thresholds(probs, labels)
    calibrated = calibrate_confident_joint(confident_joint(probs, labels, thresholds), labels)
    prune_counts = np.rint(calibrated).astype(np.int64)
    for i in range(n_classes):
        members = np.flatnonzero(labels == i)
        if members.size == 0:
            continue
        keep_at_least = 1  # never empty a class: a class that is all noise is not a label error
        budget = max(0, members.size - keep_at_least)
        for j in range(n_classes):
            count = int(min(prune_counts[i, j], budget)) if j != i else 0
            if count <= 0:
                continue
            margin = probs[members, j] - probs[members, i]
            chosen = members[np.argsort(-margin, kind="stable")[:count]]
            issues[chosen] = True
    issues &= candidates
    return issues


def confident_in_other_class(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """True where an image falls off the diagonal of the confident joint: the likeliest class whose
    probability reaches its threshold is not the given label."""
    confident = probs >= thresholds[None, :] - 1e-9
    guess = np.where(confident, probs, -np.inf).argmax(axis=1)
    return confident.any(axis=1) & (guess != labels)


def self_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Label quality in [0, 1]: the probability of the given label (lower = more likely wrong)."""
    return probs[np.arange(len(labels)), labels]


def normalized_margin(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """p(given) − max p(other), mapped to [0, 1] (0.5 = a tie)."""
    given = self_confidence(probs, labels)
    others = probs.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    return (given - others.max(axis=1) + 1.0) / 2.0


def accuracy_ceiling(probably_wrong: int, images: int) -> float | None:
    """The highest accuracy measurable on a split where `probably_wrong` of `images` labels are wrong:
    a perfect model is scored wrong on each of them."""
    return round(1.0 - probably_wrong / images, 4) if images else None


# ---------------------------------------------------------------------------------------------
# The analysis over an audit context (computed once per context, reused by gap attribution)
# ---------------------------------------------------------------------------------------------


@dataclass
class LabelAnalysis:
    classes: list[str]  # the classes the probe was trained on
    excluded_classes: dict[str, int]  # too few images to judge → their image count
    unit_shas: list[str]  # one sample per (content, label)
    unit_labels: np.ndarray  # index into classes
    unit_positions: list[list[int]]  # record positions with that content and label
    probs: np.ndarray  # out-of-fold probabilities (units × classes)
    folds: int
    thresholds: np.ndarray
    calibrated_joint: np.ndarray
    issues: np.ndarray  # bool per unit: probable label error (confident learning, `find_label_issues`)
    confident_elsewhere: np.ndarray  # bool per unit: off the diagonal of the confident joint
    neighbour_agreement: np.ndarray  # share of the k nearest other contents that carry the unit's label
    neighbour_majority: list[str | None]
    neighbours_k: int
    skipped_reason: str | None = None
    stats: dict = field(default_factory=dict)

    @property
    def label_quality(self) -> np.ndarray:
        return self_confidence(self.probs, self.unit_labels)

    @property
    def strong(self) -> np.ndarray:
        """Flagged, the probe confident in another class (above its threshold), and most of the k nearest
        neighbours carrying another label: three signals agree."""
        with np.errstate(invalid="ignore"):
            neighbours_disagree = self.neighbour_agreement < 0.5
        return self.issues & self.confident_elsewhere & neighbours_disagree


def _skipped(reason: str, classes: list[str] | None = None, excluded: dict[str, int] | None = None) -> LabelAnalysis:
    empty = np.zeros(0)
    return LabelAnalysis(classes=classes or [], excluded_classes=excluded or {}, unit_shas=[],
                         unit_labels=np.zeros(0, dtype=int), unit_positions=[], probs=np.zeros((0, 0)), folds=0,
                         thresholds=empty, calibrated_joint=np.zeros((0, 0)), issues=np.zeros(0, dtype=bool),
                         confident_elsewhere=np.zeros(0, dtype=bool),
                         neighbour_agreement=empty, neighbour_majority=[], neighbours_k=0, skipped_reason=reason)


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, folds: int,
                              seed: int) -> np.ndarray:
    """Class probabilities for every sample from a logistic-regression probe that never saw it
    (stratified K folds, seeded; samples that share a group stay in one fold). `features` should be
    unit-length embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict

    probe = LogisticRegression(C=PROBE_C, max_iter=2000)
    if len(np.unique(groups)) == len(groups):
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        return cross_val_predict(probe, features, labels, cv=cv, method="predict_proba")
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(probe, features, labels, groups=groups, cv=cv, method="predict_proba")


def neighbour_label_agreement(unit_vectors: np.ndarray, content_row: np.ndarray, unit_labels: list[str],
                              labels_of_content: list[set[str]], k: int,
                              majority_for: np.ndarray | None = None) -> tuple[np.ndarray, list[str | None]]:
    """For each unit: the share of the k nearest *other* contents that carry its label, and (for the units
    in `majority_for`, default all) the label most of them carry. `unit_vectors` are the unique contents'
    unit embeddings; `content_row[u]` is unit u's row among them."""
    from auditor.similarity.neighbours import drop_self
    from auditor.similarity.neighbours import knn

    n_units = len(unit_labels)
    k = min(k, len(unit_vectors) - 1)
    if k < 1:
        return np.full(n_units, np.nan), [None] * n_units
    sims, neighbours = knn(unit_vectors, k + 1)
    _sims, neighbours = drop_self(sims, neighbours, k)
    names = sorted({label for labels in labels_of_content for label in labels} | set(unit_labels))
    code = {name: i for i, name in enumerate(names)}
    # Most contents carry one label: compare codes in bulk; the few filed under several are checked one by one.
    single = np.array([code[next(iter(labels))] if len(labels) == 1 else -1 for labels in labels_of_content])
    unit_codes = np.array([code[label] for label in unit_labels])
    rows = neighbours[content_row]  # (units, k): the neighbouring contents
    valid = rows >= 0
    neighbour_codes = np.where(valid, single[np.maximum(rows, 0)], -2)
    matches = (neighbour_codes == unit_codes[:, None]) & valid
    for u, j in zip(*np.nonzero(neighbour_codes == -1)):
        matches[u, j] = unit_labels[u] in labels_of_content[rows[u, j]]
    counted = valid.sum(axis=1)
    agreement = np.where(counted > 0, matches.sum(axis=1) / np.maximum(counted, 1), np.nan)
    majority: list[str | None] = [None] * n_units
    wanted = np.arange(n_units) if majority_for is None else np.flatnonzero(majority_for)
    for u in wanted:
        votes: dict[str, int] = {}
        for j in rows[u][valid[u]]:
            for label in labels_of_content[j]:
                votes[label] = votes.get(label, 0) + 1
        majority[u] = max(sorted(votes), key=votes.get) if votes else None
    return agreement, majority


def analyse(ctx: AuditContext) -> LabelAnalysis:
    """The label analysis of this context (computed once, on the context: `ctx.label_analysis`)."""
    return ctx.label_analysis


def compute_label_analysis(ctx: AuditContext) -> LabelAnalysis:
    config = ctx.config
    if not ctx.has_embeddings:
        return _skipped("no embeddings (run with a backbone)")
    units: dict[tuple[str, str], list[int]] = {}
    for position in ctx.usable_positions:
        sha = ctx.encoded.record_sha[position]
        if sha in ctx.encoded.embeddings:
            units.setdefault((sha, ctx.records[position].label), []).append(position)
    counts: dict[str, int] = {}
    for _sha, label in units:
        counts[label] = counts.get(label, 0) + 1
    classes = sorted(c for c, n in counts.items() if n >= MIN_IMAGES_PER_CLASS)
    excluded = {c: n for c, n in sorted(counts.items()) if n < MIN_IMAGES_PER_CLASS}
    if len(classes) < 2:
        return _skipped(f"fewer than 2 classes with {MIN_IMAGES_PER_CLASS} or more images", classes, excluded)
    kept = [(key, positions) for key, positions in units.items() if key[1] in classes]
    unit_shas = [sha for (sha, _label), _ in kept]
    label_names = [label for (_sha, label), _ in kept]
    unit_labels = np.array([classes.index(label) for label in label_names])
    content_index: dict[str, int] = {}
    for sha in unit_shas:
        content_index.setdefault(sha, len(content_index))
    content_row = np.array([content_index[sha] for sha in unit_shas])
    contents = list(content_index)
    vectors = ctx.unit_embeddings(contents)
    folds = int(min(config.label_folds, np.bincount(unit_labels).min()))
    seed = config.seed if config.seed is not None else 0
    probs = out_of_fold_probabilities(vectors[content_row], unit_labels, content_row, folds, seed)
    thresholds = per_class_thresholds(probs, unit_labels)
    calibrated = calibrate_confident_joint(confident_joint(probs, unit_labels, thresholds), unit_labels)
    issues = find_label_issues(probs, unit_labels)
    labels_of_content: list[set[str]] = [set() for _ in contents]
    for row, label in zip(content_row, label_names):
        labels_of_content[row].add(label)
    agreement, majority = neighbour_label_agreement(vectors, content_row, label_names, labels_of_content,
                                                    config.label_neighbours, majority_for=issues)
    from auditor.similarity.neighbours import search_quality

    # Exact, or the approximate index's recall measured against exact search on a sample (reported).
    neighbour_search = search_quality(vectors, max(1, min(config.label_neighbours, len(contents) - 1))).to_dict()
    return LabelAnalysis(
        classes=classes, excluded_classes=excluded, unit_shas=unit_shas, unit_labels=unit_labels,
        unit_positions=[positions for _key, positions in kept], probs=probs, folds=folds, thresholds=thresholds,
        calibrated_joint=calibrated, issues=issues,
        confident_elsewhere=confident_in_other_class(probs, unit_labels, thresholds),
        neighbour_agreement=agreement, neighbour_majority=majority,
        neighbours_k=min(config.label_neighbours, len(contents) - 1),
        stats={"probe_accuracy": float((probs.argmax(axis=1) == unit_labels).mean()), "neighbour_search": neighbour_search},
    )


def label_noise_by_split(ctx: AuditContext) -> dict[str, dict]:
    """Per split: images judged, how many probably carry a wrong label, their share, and the accuracy
    ceiling that puts on that split (`accuracy_ceiling`). Gap attribution reads the held-out splits."""
    analysis = analyse(ctx)
    judged: dict[str, int] = {}
    wrong: dict[str, int] = {}
    strong: dict[str, int] = {}
    strong_units = analysis.strong
    per_class: dict[str, dict[str, dict]] = {}
    for u, positions in enumerate(analysis.unit_positions):
        for p in positions:
            split, label = ctx.records[p].split, ctx.records[p].label
            judged[split] = judged.get(split, 0) + 1
            wrong[split] = wrong.get(split, 0) + int(analysis.issues[u])
            strong[split] = strong.get(split, 0) + int(strong_units[u])
            cell = per_class.setdefault(split, {}).setdefault(label, {"images": 0, "probably_wrong": 0})
            cell["images"] += 1
            cell["probably_wrong"] += int(analysis.issues[u])
    result = {}
    for split in ctx.index.splits:
        images, bad = judged.get(split, 0), wrong.get(split, 0)
        result[split] = {
            "images": images,
            "probably_wrong": bad,
            "percent": percent(bad, images),
            "strong_evidence": strong.get(split, 0),
            "accuracy_ceiling": accuracy_ceiling(bad, images),
            "per_class": dict(sorted(per_class.get(split, {}).items())),
        }
    return result


def held_out_label_noise(ctx: AuditContext) -> dict[str, dict]:
    """For each held-out split (val, test, …): the share of its images whose label is probably wrong
    and the accuracy ceiling that puts on the accuracy measured there."""
    by_split = label_noise_by_split(ctx)
    return {s: {k: by_split[s][k] for k in ("images", "probably_wrong", "percent", "accuracy_ceiling")}
            for s in ctx.index.held_out_splits if s in by_split}


def class_pair_noise(analysis: LabelAnalysis) -> list[dict]:
    """Off-diagonal entries of the calibrated confident joint: which classes are filed as which."""
    rates = noise_matrix(analysis.calibrated_joint)
    pairs = []
    for i, given in enumerate(analysis.classes):
        for j, true in enumerate(analysis.classes):
            estimated = float(analysis.calibrated_joint[i, j])
            if i != j and estimated >= 0.5:
                pairs.append({"given": given, "probably": true, "estimated_images": round(estimated, 1),
                              "share_of_given_percent": round(100 * float(rates[i, j]), 2)})
    pairs.sort(key=lambda p: (-p["estimated_images"], p["given"], p["probably"]))
    return pairs[:MAX_SHOWN_PAIRS]


# ---------------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------------


def run(ctx: AuditContext) -> CheckResult:
    analysis = analyse(ctx)
    if analysis.skipped_reason:
        return CheckResult(id=CHECK_ID, status=Status.SKIPPED, summary=f"skipped: {analysis.skipped_reason}",
                           metrics={"excluded_classes": analysis.excluded_classes})
    policy = ctx.config.policy
    quality = analysis.label_quality
    margins = normalized_margin(analysis.probs, analysis.unit_labels)
    findings: list[tuple[tuple, Finding]] = []
    confirmed = 0
    strong = analysis.strong
    for u in np.flatnonzero(analysis.issues):
        given = analysis.classes[analysis.unit_labels[u]]
        suggested_index = int(analysis.probs[u].argmax())
        suggested = analysis.classes[suggested_index]
        agreement = float(analysis.neighbour_agreement[u])
        backed = bool(np.isfinite(agreement) and agreement < 0.5)
        positions = analysis.unit_positions[u]
        confirmed += len(positions) if strong[u] else 0
        paths = [ctx.records[p].path for p in positions]
        k = analysis.neighbours_k
        agreeing = int(round(agreement * k)) if np.isfinite(agreement) else None
        neighbours_text = (f"{agreeing} of {k} nearest images are {given!r}" if agreeing is not None
                           else "no neighbours to compare")
        message = (f"filed as {given!r}, looks like {suggested!r} (p({suggested}) = {analysis.probs[u, suggested_index]:.2f}, "
                   f"p({given}) = {quality[u]:.2f}; {neighbours_text}): {', '.join(paths[:3])}"
                   + (f" and {len(paths) - 3} more" if len(paths) > 3 else ""))
        finding = Finding(
            id=stable_finding_id(CHECK_ID, "label", [analysis.unit_shas[u], f"label={given}"]),
            severity=Severity.WARNING if strong[u] else Severity.INFO,
            message=message,
            paths=paths,
            evidence={
                "score": round(float(quality[u]), 4),
                "score_name": "label quality (self-confidence: out-of-fold probability of the given label)",
                "given_label": given,
                "suggested_label": suggested,
                "suggested_probability": round(float(analysis.probs[u, suggested_index]), 4),
                "normalized_margin": round(float(margins[u]), 4),
                "class_threshold": round(float(analysis.thresholds[suggested_index]), 4),
                "neighbour_agreement": round(agreement, 4) if np.isfinite(agreement) else None,
                "neighbour_majority": analysis.neighbour_majority[u],
                "neighbours_k": k,
                "neighbours_disagree": backed,
                "probe_confident_in_suggested": bool(analysis.confident_elsewhere[u]),
                "strong_evidence": bool(strong[u]),
                "splits": sorted({ctx.records[p].split for p in positions}),
            },
        )
        findings.append(((0 if strong[u] else 1, float(quality[u]), paths[0]), finding))
    findings.sort(key=lambda item: item[0])
    by_split = label_noise_by_split(ctx)
    flagged_images = sum(m["probably_wrong"] for m in by_split.values())
    judged_images = sum(m["images"] for m in by_split.values())
    limit = policy.label_issues_max_percent
    failing = [s for s, m in by_split.items() if m["images"] and m["percent"] > limit]
    status = Status.FAIL if failing else Status.WARN if confirmed else Status.PASS
    accuracy = analysis.stats["probe_accuracy"]
    parts = [
        f"{plural(flagged_images, 'image')} of {judged_images} ({percent(flagged_images, judged_images)} %) "
        f"probably {'carries' if flagged_images == 1 else 'carry'} the wrong label"
        + (f", {confirmed} with strong evidence (probe confident in another class, most neighbours agree)"
           if findings else ""),
        f"out-of-fold probe accuracy {100 * accuracy:.1f} %",
    ]
    for split in ctx.index.held_out_splits:
        m = by_split.get(split)
        if m and m["images"]:
            parts.append(f"{split}: {m['percent']} % probably wrong, accuracy ceiling {100 * m['accuracy_ceiling']:.1f} %")
    if analysis.excluded_classes:
        parts.append("not judged (fewer than " + f"{MIN_IMAGES_PER_CLASS} images): "
                     + ", ".join(f"{c!r} ({n})" for c, n in analysis.excluded_classes.items()))
    search = analysis.stats.get("neighbour_search")
    if search and not search["exact"]:
        parts.append(f"neighbours by approximate search (recall@{search['k']} {search['recall']:.3f} against exact "
                     f"search on {search['queries_measured']} sampled images)")
    policy_text = "never fail" if limit >= 100 else f"fail above {limit:g} % of a split"
    summary = "; ".join(parts) + f" (policy: warn on strong evidence, {policy_text})"
    metrics = {
        "method": "confident learning on out-of-fold probabilities of a logistic-regression probe (error count "
                  "from the calibrated confident joint, lowest self-confidence first); k-NN label agreement",
        "folds": analysis.folds,
        "neighbours_k": analysis.neighbours_k,
        "classes": analysis.classes,
        "excluded_classes": analysis.excluded_classes,
        "unique_samples": len(analysis.unit_shas),
        "images": judged_images,
        "flagged": flagged_images,
        "flagged_percent": percent(flagged_images, judged_images),
        "strong_evidence": confirmed,
        "probe_accuracy": round(accuracy, 4),
        "estimated_noise_percent": round(100 * float(
            (analysis.calibrated_joint.sum() - np.trace(analysis.calibrated_joint)) / max(1, len(analysis.unit_shas))), 2),
        "class_thresholds": {c: round(float(t), 4) for c, t in zip(analysis.classes, analysis.thresholds)},
        "class_pair_noise": class_pair_noise(analysis),
        "per_split": by_split,
        "neighbour_search": search,
    }
    return CheckResult(id=CHECK_ID, status=status, summary=summary, metrics=metrics,
                       findings=[finding for _key, finding in findings])


CHECK = self_judged("label_issues", run)
