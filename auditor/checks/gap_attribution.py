"""`gap_attribution`: how many points of the reference run's train/validation gap each data problem explains.

The gap splits exactly into parts, by the kind of held-out image (each image in one kind):

    gap = train_acc − val_acc
        = (train_acc − acc_core)                          remainder: over-fitting, shift, imbalance, …
        − n_leak / N · (acc_leak − acc_nodup)             leakage (train duplicate, same label): usually < 0,
                                                          it makes validation look better
        − n_conf / N · (acc_conf − acc_nodup)             label conflicts (train duplicate, other label)
        + n_sus / N_nodup · (acc_core − acc_sus)          probable mislabels without a train duplicate
                                                          (from `label_issues`, only when it supports its
                                                          estimate: a weak probe's confusion is not noise)

with `acc_nodup` the accuracy on held-out images without a train duplicate (the leakage-adjusted
accuracy) and `acc_core` the accuracy on those that are not probable mislabels either. Shift and
imbalance are measured inside the remainder (accuracy by domain-score quintile, by class) and given as
estimates, not added. A counterfactual retrain after the audit's fixes checks the whole story.

Shift uses the per-image domain-classifier scores behind `split_shift` (`ctx.domain_scores`); when they
cannot be had, that part is skipped with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from auditor.checks.common import plural
from auditor.context import AuditContext
from auditor.checks.base import Check, Evidence, Verdict, skipped
from auditor.config import Policy
from auditor.report import Status
from auditor.stats import bootstrap_mean_ci, inflation_ci

CHECK_ID = "gap_attribution"
MATERIAL_POINTS = 1.0  # warn when one data problem moves validation accuracy by this many points or more
QUINTILES = 5


# ---------------------------------------------------------------------------------------------
# Statistics (pure functions: arrays in, numbers out)
# ---------------------------------------------------------------------------------------------


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def decompose(train_accuracy: float, correct: np.ndarray, kind: np.ndarray) -> dict[str, Any]:
    """Exact split of the gap by kind of held-out image: "leaked", "conflict", "suspect", "clean".

    Returns accuracies per kind and points (of 100) per part; `sum(parts) == gap` exactly."""
    correct = np.asarray(correct, dtype=float)
    kind = np.asarray(kind)
    n = len(correct)
    nodup = (kind == "clean") | (kind == "suspect")
    acc = {k: _mean(correct[kind == k]) for k in ("leaked", "conflict", "suspect", "clean")}
    acc_nodup = _mean(correct[nodup])
    acc_core = acc["clean"] if acc["clean"] is not None else acc_nodup
    val_accuracy = float(correct.mean())
    parts: dict[str, float] = {}
    for k, name in (("leaked", "leakage"), ("conflict", "label_conflicts")):
        count = int((kind == k).sum())
        parts[name] = -100.0 * count / n * (acc[k] - acc_nodup) if count and acc_nodup is not None else 0.0
    suspects = int((kind == "suspect").sum())
    parts["probable_mislabels"] = (100.0 * suspects / int(nodup.sum()) * (acc_core - acc["suspect"])
                                   if suspects and acc["clean"] is not None else 0.0)
    if acc_nodup is None:  # every held-out image has a train duplicate: nothing clean to compare with
        parts = {"leakage": 0.0, "label_conflicts": 0.0, "probable_mislabels": 0.0}
        acc_core = val_accuracy
    parts["remainder"] = 100.0 * (train_accuracy - acc_core)
    return {
        "gap_points": 100.0 * (train_accuracy - val_accuracy),
        "parts": parts,
        "accuracy": {"all": val_accuracy, "no_train_duplicate": acc_nodup, "core": acc_core, **acc},
        "counts": {k: int((kind == k).sum()) for k in ("leaked", "conflict", "suspect", "clean")},
    }


def accuracy_by_quintile(correct: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
    """Accuracy in each fifth of the held-out images ranked by domain score (most train-like first)."""
    correct = np.asarray(correct, dtype=float)
    scores = np.asarray(scores, dtype=float)
    order = np.argsort(scores, kind="stable")
    rows = []
    for q, chunk in enumerate(np.array_split(order, QUINTILES), start=1):
        if not len(chunk):
            continue
        rows.append({"quintile": q, "images": int(len(chunk)), "accuracy": round(float(correct[chunk].mean()), 4),
                     "score_min": round(float(scores[chunk].min()), 4), "score_max": round(float(scores[chunk].max()), 4)})
    return rows


def shift_points(quintiles: list[dict[str, Any]]) -> float:
    """Points lost to images less train-like than the most train-like fifth (never negative)."""
    if len(quintiles) < 2:
        return 0.0
    total = sum(q["images"] for q in quintiles)
    best = quintiles[0]["accuracy"]
    return max(0.0, 100.0 * sum(q["images"] / total * (best - q["accuracy"]) for q in quintiles[1:]))


def imbalance_points(per_class: dict[str, dict[str, Any]]) -> float:
    """Points lost in classes with below-median training support, against the other classes' accuracy."""
    rows = [r for r in per_class.values() if r["val_images"] and r["accuracy"] is not None]
    if len(rows) < 2:
        return 0.0
    median = float(np.median([r["train_images"] for r in rows]))
    small = [r for r in rows if r["train_images"] < median]
    large = [r for r in rows if r["train_images"] >= median]
    if not small or not large:
        return 0.0
    total = sum(r["val_images"] for r in rows)
    large_acc = sum(r["accuracy"] * r["val_images"] for r in large) / sum(r["val_images"] for r in large)
    return max(0.0, 100.0 * sum(r["val_images"] / total * (large_acc - r["accuracy"]) for r in small))


# ---------------------------------------------------------------------------------------------
# Reading the audit: who leaks, who conflicts, who is probably mislabelled, domain scores
# ---------------------------------------------------------------------------------------------


def duplicate_kinds(ctx: AuditContext, train: list[int], val: list[int]) -> dict[int, str]:
    """For each held-out position: "conflict" (a train duplicate with another label), "leaked" (a train
    duplicate with the same label) or "clean" (no train duplicate)."""
    train_set, val_set = set(train), set(val)
    kinds = {p: "clean" for p in val}
    for group in ctx.duplicate_groups + ctx.left_out_leaks:  # the leaks `leakage` counts
        train_labels = {ctx.records[p].label for p in group if p in train_set}
        if not train_labels:
            continue
        for p in group:
            if p in val_set:
                kinds[p] = "conflict" if train_labels - {ctx.records[p].label} else "leaked"
    return kinds


def probable_mislabels(ctx: AuditContext, positions: list[int]) -> tuple[set[int] | None, str | None]:
    """Positions the shared label analysis judges probably mislabelled, or (None, why not)."""
    try:
        analysis = ctx.label_analysis
    except Exception as exc:  # a failure of the shared computation must not sink this check
        return None, f"the label analysis failed: {type(exc).__name__}: {exc}"
    if analysis.skipped_reason:
        return None, f"label_issues skipped: {analysis.skipped_reason}"
    if not analysis.supported:  # a weak probe's confusion is not wrong labels: attribute nothing
        return None, f"label_issues cannot support a mislabel estimate: {analysis.reason}"
    flagged = {p for u, members in enumerate(analysis.unit_positions) if analysis.issues[u] for p in members}
    return flagged & set(positions), None


def domain_scores(ctx: AuditContext, split: str) -> tuple[dict[str, float] | None, str | None]:
    """Per-content P(held-out | image) from the domain classifier, or (None, why not)."""
    try:
        scores = ctx.domain_scores
    except Exception as exc:  # a failure of the shared computation must not sink this check
        return None, f"the domain classifier failed: {type(exc).__name__}: {exc}"
    if not scores.get(split):
        return None, f"no domain-classifier scores for {split} (too few images with embeddings on either side)"
    return scores[split], None


# ---------------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------------


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def compute(ctx: AuditContext) -> Evidence:
    if ctx.config.finetune is None:
        from auditor.checks.reference_finetune import NOT_REQUESTED

        return skipped(NOT_REQUESTED)
    from auditor.finetune.head import train_on_positions

    reference = ctx.reference_run
    plan, head, options = reference.plan, reference.run, reference.options
    seed, resamples = reference.seed, options.bootstrap
    correct = head.val_probs.argmax(axis=1) == reference.val_labels
    train_correct = head.train_probs.argmax(axis=1) == reference.train_labels

    # Which held-out images leak, conflict, or are probably mislabelled; the gap split by those kinds.
    dup = duplicate_kinds(ctx, plan.train, plan.val)
    suspects, suspects_reason = probable_mislabels(ctx, plan.val)
    kind = np.array([dup[p] if dup[p] != "clean" or not suspects or p not in suspects else "suspect" for p in plan.val])
    clean_mask = ~((kind == "leaked") | (kind == "conflict"))
    decomposition = decompose(head.train_accuracy, correct, kind)
    parts = decomposition["parts"]
    leakage = _leakage_part(correct, clean_mask, parts, resamples, seed)
    conflicts = _conflict_part(correct, kind, parts)
    mislabels = _mislabel_part(kind, decomposition, conflicts, suspects is not None, suspects_reason)
    per_class = _per_class(ctx, plan, reference, correct, clean_mask)
    shift = _shift_part(ctx, plan, correct, clean_mask, per_class)
    imbalance = _imbalance_part(per_class)
    counterfactual = _counterfactual(ctx, reference, train_on_positions)

    metrics: dict[str, Any] = {
        "train_accuracy": _r(head.train_accuracy),
        "val_accuracy": _r(float(correct.mean())),
        "gap_points": round(decomposition["gap_points"], 2),
        "val_accuracy_leaked": leakage["val_accuracy_leaked"],
        "val_accuracy_clean": leakage["val_accuracy_clean"],
        "val_accuracy_clean_ci": leakage["val_accuracy_clean_ci"],
        "leakage_inflation": leakage["leakage_inflation"],
        "leakage_inflation_ci": leakage["leakage_inflation_ci"],
        "counterfactual_train_accuracy": counterfactual.get("train_accuracy"),
        "counterfactual_val_accuracy": counterfactual.get("val_accuracy"),
        "counterfactual_gap_points": counterfactual.get("gap_points"),
        "decomposition": {
            "points": {k: round(v, 2) for k, v in parts.items()},
            "sign": "positive points widen the train/validation gap; negative points hide part of it "
                    "(validation looks better than it is)",
            "accuracy": {k: _r(v) for k, v in decomposition["accuracy"].items()},
            "counts": decomposition["counts"],
            "estimates_inside_remainder": {"shift": shift.get("points_estimate"),
                                           "imbalance": imbalance["points_estimate"]},
        },
        "leakage": leakage,
        "label_conflicts": conflicts,
        "probable_mislabels": mislabels,
        "shift": shift,
        "imbalance": imbalance,
        "counterfactual": counterfactual,
        "train_accuracy_on_train_duplicates": _r(_mean(train_correct[_train_dup_mask(ctx, plan.train)])),
        "val_split": plan.val_split,
        "confidence_level": 0.95,
        "bootstrap_resamples": resamples,
    }
    verdict = verdict_text(metrics, head, plan)
    metrics["verdict"] = verdict
    metrics["material_problems"] = [name for name in ("leakage", "label_conflicts", "probable_mislabels")
                                    if abs(parts[name]) >= MATERIAL_POINTS]
    return Evidence(summary=verdict, metrics=metrics)


def _leakage_part(correct: np.ndarray, clean_mask: np.ndarray, parts: dict, resamples: int, seed: int) -> dict:
    """Accuracy on held-out images with a train duplicate and on the rest (the leakage-adjusted accuracy),
    with bootstrap intervals, and the inflation between them."""
    has_dup = ~clean_mask
    acc_clean = _mean(correct[clean_mask])
    n_val = len(correct)
    return {
        "val_images": n_val,
        "with_train_duplicate": int(has_dup.sum()),
        "percent_with_train_duplicate": round(100.0 * has_dup.sum() / n_val, 2),
        "val_accuracy_leaked": _r(_mean(correct[has_dup])),
        "val_accuracy_leaked_ci": bootstrap_mean_ci(correct[has_dup], resamples, seed),
        "val_accuracy_clean": _r(acc_clean),
        "val_accuracy_clean_ci": bootstrap_mean_ci(correct[clean_mask], resamples, seed + 1),
        "leakage_inflation": _r(float(correct.mean()) - acc_clean if acc_clean is not None else None),
        "leakage_inflation_ci": inflation_ci(correct, clean_mask, resamples, seed + 2),
        "points_same_label": round(-parts["leakage"], 2),
        "points_other_label": round(-parts["label_conflicts"], 2),
    }


def _conflict_part(correct: np.ndarray, kind: np.ndarray, parts: dict) -> dict:
    """Held-out images whose train duplicate carries another label: scored wrong, a ceiling on accuracy."""
    conflict_mask = kind == "conflict"
    share = float(conflict_mask.mean())
    return {
        "val_images_with_conflicting_train_duplicate": int(conflict_mask.sum()),
        "share": round(share, 4),
        "accuracy_on_them": _r(_mean(correct[conflict_mask])),
        "val_accuracy_ceiling": round(1.0 - share, 4),
        "points": round(parts["label_conflicts"], 2),
    }


def _mislabel_part(kind: np.ndarray, decomposition: dict, conflicts: dict, available: bool,
                   reason: str | None) -> dict:
    """Probably mislabelled held-out images without a train duplicate — only when label_issues supports it."""
    mislabels: dict[str, Any] = {"available": available, "reason": reason}
    if available:
        share = float((kind == "suspect").mean())
        mislabels.update(probable_mislabels_without_duplicate=int((kind == "suspect").sum()), share=round(share, 4),
                         accuracy_on_them=_r(decomposition["accuracy"]["suspect"]),
                         val_accuracy_ceiling=round(1.0 - conflicts["share"] - share, 4),
                         points=round(decomposition["parts"]["probable_mislabels"], 2))
    return mislabels


def _shift_part(ctx: AuditContext, plan, correct: np.ndarray, clean_mask: np.ndarray,
                per_class: dict[str, dict]) -> dict[str, Any]:
    """Accuracy by quintile of the domain-classifier score (on held-out images without a train duplicate),
    and each class's mean score; an estimate inside the remainder, not a part of the gap."""
    if plan.made:
        return {"available": False, "reason": "the held-out split was made by auditor at random: nothing to shift"}
    scores, reason = domain_scores(ctx, plan.val_split)
    shift: dict[str, Any] = {"available": scores is not None, "reason": reason}
    if scores is None:
        return shift
    shas = [ctx.encoded.record_sha[p] for p in plan.val]
    scored = np.array([s in scores for s in shas]) & clean_mask
    values = np.array([scores.get(s, np.nan) for s in shas])
    quintiles = accuracy_by_quintile(correct[scored], values[scored]) if scored.sum() >= 2 * QUINTILES else []
    shift.update(images_scored=int(scored.sum()), by_quintile=quintiles, points_estimate=round(shift_points(quintiles), 2),
                 score="P(held-out | image) from split_shift's domain classifier; quintile 1 = most train-like")
    if not quintiles:
        shift.update(available=False, reason=f"only {int(scored.sum())} scored held-out images without a train duplicate")
    for label, row in per_class.items():
        members = [i for i, p in enumerate(plan.val) if ctx.records[p].label == label and scored[i]]
        row["mean_domain_score"] = _r(float(np.mean(values[members]))) if members else None
    return shift


def _imbalance_part(per_class: dict[str, dict]) -> dict[str, Any]:
    imbalance: dict[str, Any] = {"per_class": per_class, "points_estimate": round(imbalance_points(per_class), 2)}
    rows = [r for r in per_class.values() if r["accuracy"] is not None]
    if len(rows) >= 3:
        from scipy.stats import spearmanr

        rho = spearmanr([r["train_images"] for r in rows], [r["accuracy"] for r in rows]).statistic
        imbalance["spearman_train_images_vs_accuracy"] = _r(rho) if rho == rho else None
    return imbalance


def judge(evidence: Evidence, policy: Policy) -> Verdict:
    """Warn when one data problem moves validation accuracy by MATERIAL_POINTS or more."""
    status = Status.WARN if evidence.metrics["material_problems"] else Status.PASS
    return Verdict(status, policy=f"warn when a data problem moves validation accuracy by {MATERIAL_POINTS:g} point or more")


def _train_dup_mask(ctx: AuditContext, train: list[int]) -> np.ndarray:

    in_group: set[int] = set()
    train_set = set(train)
    for group in ctx.duplicate_groups:
        members = [p for p in group if p in train_set]
        if len(members) > 1:
            in_group.update(members)
    return np.array([p in in_group for p in train], dtype=bool)


def _per_class(ctx: AuditContext, plan, reference, correct: np.ndarray, clean: np.ndarray) -> dict[str, dict]:
    train_counts = np.bincount(reference.train_labels, minlength=len(plan.classes))
    rows = {}
    for i, label in enumerate(plan.classes):
        members = (reference.val_labels == i) & clean
        rows[label] = {
            "train_images": int(train_counts[i]),
            "train_share": round(float(train_counts[i] / max(train_counts.sum(), 1)), 4),
            "val_images": int(members.sum()),
            "accuracy": _r(_mean(correct[members])),
        }
    return rows


def _counterfactual(ctx: AuditContext, reference, train_on_positions) -> dict[str, Any]:
    """Retrain on the split `auditor split` writes for this dataset (--keep-existing --dedupe, or --fractions when
    the fine-tune made its own held-out split): the accuracy after the fix is the accuracy on that split."""
    from auditor.fix.from_audit import counterfactual_split

    plan, options = reference.plan, reference.options
    positions, split_stats = counterfactual_split(ctx, reference.seed,
                                                  made_holdout=options.holdout_fraction if plan.made else None)
    with_maps = set(plan.train) | set(plan.val)
    new_train = [p for p in positions.get("train", []) if p in with_maps]
    new_val = [p for p in positions.get("val" if plan.made else plan.val_split, []) if p in with_maps]
    base = {"fixes": "the split `auditor split` writes: " + ("--fractions (the held-out split was made by auditor)"
                                                             if plan.made else "--keep-existing --dedupe"),
            "dropped": {"train": len(set(plan.train) - set(new_train)), "val": len(set(plan.val) - set(new_val))},
            "excluded_by_kind": split_stats["excluded"]["by_kind"], "moved": split_stats["moved"]["total"],
            "train_images": len(new_train), "val_images": len(new_val)}
    if not options.counterfactual:
        return {**base, "ran": False, "reason": "turned off (--no-counterfactual)"}
    if set(new_train) == set(plan.train) and set(new_val) == set(plan.val):
        head = reference.run
        return {**base, "ran": False, "reason": "nothing to fix: the reference run is the counterfactual",
                "train_accuracy": _r(head.train_accuracy), "val_accuracy": _r(head.val_accuracy),
                "gap_points": round(100 * (head.train_accuracy - head.val_accuracy), 2)}
    labels_left = {ctx.records[p].label for p in new_train}
    new_val = [p for p in new_val if ctx.records[p].label in labels_left]
    classes = sorted(labels_left)
    if len(classes) < 2 or not new_val:
        return {**base, "ran": False, "reason": "too few images left after the fixes"}
    run, _train_labels, _val_labels = train_on_positions(ctx, new_train, new_val, classes, options, reference.seed)
    return {**base, "ran": True, "train_accuracy": _r(run.train_accuracy), "val_accuracy": _r(run.val_accuracy),
            "gap_points": round(100 * (run.train_accuracy - run.val_accuracy), 2), "epochs_run": run.epochs_run,
            "best_epoch": run.best_epoch, "curves": run.history, "head_parameters": run.parameters,
            "train_seconds": round(run.train_seconds, 2)}


def _millions(count: int) -> str:
    return f"{count / 1e6:.0f}M" if count >= 1e6 else f"{count / 1e3:.0f}k"


def verdict_text(metrics: dict[str, Any], head, plan) -> str:
    """A few plain sentences: the gap, what leakage, conflicts and mislabels do to it, what remains."""
    gap = metrics["gap_points"]
    points = metrics["decomposition"]["points"]
    leak, conflicts = metrics["leakage"], metrics["label_conflicts"]
    parts = [f"Train accuracy {_pct(metrics['train_accuracy'])}, validation {_pct(metrics['val_accuracy'])}: "
             f"a {gap:.1f}-point gap."]
    n_dup, n_val = leak["with_train_duplicate"], leak["val_images"]
    if n_dup and leak["val_accuracy_clean"] is not None:
        ci = leak["val_accuracy_clean_ci"]
        infl = 100 * leak["leakage_inflation"]
        same, other = leak["points_same_label"], leak["points_other_label"]
        split_text = (f" ({same:+.1f} from copies with the same label, {other:+.1f} from copies with another label)"
                      if conflicts["val_images_with_conflicting_train_duplicate"] else "")
        parts.append(
            f"Leakage: {n_dup} of {n_val} validation images ({leak['percent_with_train_duplicate']:.1f} %) have a "
            f"duplicate in train; the head scores {_pct(leak['val_accuracy_leaked'])} on them and "
            f"{_pct(leak['val_accuracy_clean'])} (95 % CI {_pct(ci[0])}–{_pct(ci[1])}) on the rest, so validation "
            + (f"looks {infl:.1f} points better than it is{split_text}; the gap without leakage would be "
               f"{gap + infl:.1f} points." if infl >= 0
               else f"looks {-infl:.1f} points worse than the clean part{split_text}.")
        )
    elif n_dup:
        parts.append(f"Leakage: all {n_val} validation images have a duplicate in train; nothing clean to compare with.")
    else:
        parts.append("Leakage: no validation image has a duplicate in train.")
    if conflicts["val_images_with_conflicting_train_duplicate"]:
        parts.append(
            f"Label conflicts: {plural(conflicts['val_images_with_conflicting_train_duplicate'], 'validation image')} "
            f"({100 * conflicts['share']:.1f} %) "
            f"{'has' if conflicts['val_images_with_conflicting_train_duplicate'] == 1 else 'have'} a train duplicate "
            f"with another label, which costs "
            f"{points['label_conflicts']:.1f} points and caps validation accuracy at {_pct(conflicts['val_accuracy_ceiling'])}."
        )
    mislabels = metrics["probable_mislabels"]
    if not mislabels.get("available") and "cannot support" in (mislabels.get("reason") or ""):
        parts.append("Probable mislabels: none attributed; label_issues cannot tell label errors apart from its "
                     "probe's confusion on this data, so no points of the gap and no accuracy ceiling are claimed.")
    if mislabels.get("available") and mislabels.get("probable_mislabels_without_duplicate"):
        parts.append(
            f"Probable mislabels: {mislabels['probable_mislabels_without_duplicate']} other validation images "
            f"({100 * mislabels['share']:.1f} %) are probably mislabelled (label_issues); they account for "
            f"{points['probable_mislabels']:.1f} points of the gap and, with the conflicts, cap validation accuracy "
            f"at {_pct(mislabels['val_accuracy_ceiling'])}."
        )
    shift = metrics["shift"]
    if shift.get("available") and shift.get("by_quintile"):
        q = shift["by_quintile"]
        parts.append(f"Shift: accuracy is {_pct(q[0]['accuracy'])} on the most train-like fifth of validation and "
                     f"{_pct(q[-1]['accuracy'])} on the least, about {shift['points_estimate']:.1f} points.")
    imbalance = metrics["imbalance"]["points_estimate"]
    if imbalance >= MATERIAL_POINTS:
        parts.append(f"Imbalance: the classes with less training data cost about {imbalance:.1f} points.")
    cf = metrics["counterfactual"]
    n_train = len(plan.train)
    if cf.get("ran"):
        remaining = cf["gap_points"]
        tail = (f"which is ordinary over-fitting of a {_millions(cf['head_parameters'])}-parameter head on "
                f"{cf['train_images']:,} images".replace(",", " ") if remaining > 0 else "no over-fitting left")
        parts.append(f"After the fixes ({_fixes_text(cf)}) the head reaches train {_pct(cf['train_accuracy'])}, "
                     f"validation {_pct(cf['val_accuracy'])}: a {remaining:.1f}-point gap, {tail}.")
    else:
        remainder = points["remainder"]
        parts.append(f"The remaining {remainder:.1f} points are over-fitting and everything else of a "
                     f"{_millions(head.parameters)}-parameter head on {n_train:,} images".replace(",", " ")
                     + (f" ({cf.get('reason')})." if cf.get("reason") else "."))
    return " ".join(parts)


def _fixes_text(counterfactual: dict[str, Any]) -> str:
    kinds = counterfactual.get("excluded_by_kind", {})
    names = {"duplicate": "redundant or leaking copies", "label_conflict": "images with conflicting labels",
             "broken": "broken files", "suspect_label": "probably mislabelled images", "not_indexed": "stray files"}
    texts = [f"{n} {names.get(kind, kind)} left out" for kind, n in kinds.items() if n]
    if counterfactual.get("moved"):
        texts.append(f"{counterfactual['moved']} images moved")
    return ", ".join(texts) or "none needed"


CHECK = Check(CHECK_ID, compute, judge)
