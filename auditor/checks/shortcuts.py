"""`shortcuts`: can the label be guessed from anything but the content?

A small cross-validated model (a shallow decision tree) sees only properties that say nothing about what
the image shows: format, width, height, aspect ratio, file size, colour mode, EXIF camera model, JPEG
quality, and the source (manifest column, or `--source-depth N`). Its balanced accuracy is compared
with chance by a permutation test; each property's association with the label (Cramér's V, chi-square,
Holm-adjusted) says which properties carry the signal and how ("92 % of 'bees' are PNG, 3 % of 'ants'").

Where a source is known: the source × class table, Cramér's V between source and class, and each split's
source composition (a held-out split drawn from one source only is a shift waiting to happen).

The model is fitted on train (what a model would learn from), one row per content per label, at most
MAX_MODEL_ROWS rows; everything is read from the cached scans (no image is opened again).
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable

import numpy as np

from auditor.config import REFERENCE_SPLIT, Policy
from auditor.checks.common import one_blas_thread
from auditor.context import AuditContext
from auditor.encoding.imaging import ImageScan
from auditor.checks.base import Check, Evidence, Verdict, skipped
from auditor.report import Finding, Severity, Status, stable_finding_id
from auditor.stats import holm, sequential_permutation_test

CHECK_ID = "shortcuts"

MAX_MODEL_ROWS = 5000  # rows for the model and its permutations (seeded, per-class cap)
MAX_PERMUTATIONS = 999
MIN_CLASS_ROWS = 3  # a class with fewer train images is left out of the model
CV_FOLDS = 5
TREE_DEPTH = 5
MAX_CATEGORIES = 20  # per categorical property; rarer values are pooled as "other"
QUANTILE_BINS = 5  # continuous properties are binned into quantiles for the per-property association
NONE = "(none)"

# name → reader; continuous ones return a float or None, categorical ones a string or None.
CONTINUOUS: dict[str, Callable[[ImageScan], float | None]] = {
    "width": lambda s: float(s.width) if s.width else None,
    "height": lambda s: float(s.height) if s.height else None,
    "aspect_ratio": lambda s: s.width / s.height if s.width and s.height else None,
    "file_size": lambda s: float(s.file_size),
    "jpeg_quality": lambda s: s.properties.get("jpeg_quality"),
}
CATEGORICAL: dict[str, Callable[[ImageScan], str | None]] = {
    "format": lambda s: s.format,
    "mode": lambda s: s.mode,
    "camera_model": lambda s: s.properties.get("camera_model"),
}
# How to say "92 % of 'bees' <phrase>": (phrase for a value, phrase for a missing value)
CATEGORY_PHRASES = {
    "format": ("are {v}", "have no format"),
    "mode": ("are colour mode {v}", "have no colour mode"),
    "camera_model": ("were taken with camera {v!r}", "have no EXIF camera model"),
    "source": ("come from source {v!r}", "have no source"),
}


def lift_over_chance(balanced_accuracy: float, classes: int) -> float:
    """0 at chance (1/classes), 1 at perfect balanced accuracy."""
    chance = 1.0 / classes
    return (balanced_accuracy - chance) / (1.0 - chance)


def association(labels: list[str], values: list[str]) -> dict[str, Any] | None:
    """Chi-square test of independence and Cramér's V between two categorical columns."""
    from scipy.stats import chi2_contingency
    from scipy.stats.contingency import association as cramers_v

    rows, cols = sorted(set(labels)), sorted(set(values))
    if len(rows) < 2 or len(cols) < 2:
        return None
    row_of, col_of = {r: i for i, r in enumerate(rows)}, {c: j for j, c in enumerate(cols)}
    table = np.zeros((len(rows), len(cols)), dtype=int)
    for label, value in zip(labels, values):
        table[row_of[label], col_of[value]] += 1
    chi2, p_value, dof, _ = chi2_contingency(table, correction=False)
    return {"p_value": float(f"{p_value:.4g}"), "cramers_v": round(float(cramers_v(table, method="cramer")), 4),
            "chi2": round(float(chi2), 3), "dof": int(dof), "table": table, "rows": rows, "cols": cols}


def category_sentence(name: str, test: dict[str, Any]) -> str:
    """'92 % of 'bees' are PNG, 3 % of 'ants'': the value whose share differs most between two classes."""
    table, rows, cols = test["table"], test["rows"], test["cols"]
    shares = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
    spread = shares.max(axis=0) - shares.min(axis=0)
    j = int(np.argmax(spread))
    high, low = int(np.argmax(shares[:, j])), int(np.argmin(shares[:, j]))
    value_phrase, none_phrase = CATEGORY_PHRASES.get(name, (f"have {name} {{v!r}}", f"have no {name}"))
    phrase = none_phrase if cols[j] == NONE else value_phrase.format(v=cols[j])
    return f"{shares[high, j] * 100:.0f} % of {rows[high]!r} {phrase}, {shares[low, j] * 100:.0f} % of {rows[low]!r}"


def _format_value(name: str, value: float) -> str:
    if name == "file_size":
        return f"{value / 2**20:.1f} MB" if value >= 2**20 else f"{value / 1024:.0f} kB"
    if name == "aspect_ratio":
        return f"{value:.2f}"
    if name in ("width", "height"):
        return f"{value:.0f} px"
    return f"{value:.0f}"


def continuous_sentence(name: str, labels: list[str], values: list[float | None]) -> str:
    """'median file size is 1.2 MB for 'bees' vs 80 kB for 'ants''."""
    medians = {}
    for label in sorted(set(labels)):
        present = [v for l, v in zip(labels, values) if l == label and v is not None]
        if present:
            medians[label] = float(np.median(present))
    if len(medians) < 2:
        missing = {label: np.mean([v is None for l, v in zip(labels, values) if l == label]) for label in set(labels)}
        high = max(missing, key=missing.get)
        return f"{missing[high] * 100:.0f} % of {high!r} have no {name.replace('_', ' ')}"
    high, low = max(medians, key=medians.get), min(medians, key=medians.get)
    return (f"median {name.replace('_', ' ')} is {_format_value(name, medians[high])} for {high!r} "
            f"vs {_format_value(name, medians[low])} for {low!r}")


def _binned(values: list[float | None]) -> list[str]:
    """Quantile bins of a continuous column as category names; missing values are their own category."""
    present = np.array([v for v in values if v is not None], dtype=float)
    if present.size == 0:
        return [NONE] * len(values)
    edges = np.unique(np.quantile(present, np.linspace(0, 1, QUANTILE_BINS + 1)[1:-1]))
    return [NONE if v is None else f"q{int(np.searchsorted(edges, v, side='right'))}" for v in values]


def _columns(ctx: AuditContext, positions: list[int], with_source: bool) -> tuple[dict, dict]:
    scans = [ctx.encoded.scans[ctx.encoded.record_sha[p]] for p in positions]
    continuous = {name: [read(s) for s in scans] for name, read in CONTINUOUS.items()}
    categorical = {name: [str(v) if (v := read(s)) is not None else NONE for s in scans]
                   for name, read in CATEGORICAL.items()}
    if with_source:
        categorical["source"] = [ctx.records[p].source or NONE for p in positions]
    return continuous, categorical


def _feature_matrix(continuous: dict, categorical: dict) -> np.ndarray:
    """Numbers as they are (NaN where missing: the tree handles it), categories one-hot (no labels used)."""
    from sklearn.preprocessing import OneHotEncoder

    numeric = np.array([[np.nan if v is None else float(v) for v in column] for column in continuous.values()],
                       dtype=float).T
    parts = [numeric]
    if categorical:
        encoder = OneHotEncoder(max_categories=MAX_CATEGORIES, handle_unknown="infrequent_if_exist",
                                sparse_output=False)
        parts.append(encoder.fit_transform(np.array(list(categorical.values()), dtype=object).T))
    return np.hstack(parts)


def _model_rows(ctx: AuditContext, seed: int) -> tuple[list[int], str, dict[str, int]]:
    """Train rows (one per content and label), capped per class; classes too small for CV are left out."""
    has_train = REFERENCE_SPLIT in ctx.index.splits
    seen: dict[tuple[str, str], int] = {}
    for p in ctx.usable_positions:
        record = ctx.records[p]
        if has_train and record.split != REFERENCE_SPLIT:
            continue
        seen.setdefault((ctx.encoded.record_sha[p], record.label), p)
    by_class: dict[str, list[int]] = {}
    for (_, label), p in seen.items():
        by_class.setdefault(label, []).append(p)
    dropped = {label: len(rows) for label, rows in by_class.items() if len(rows) < MIN_CLASS_ROWS}
    kept = {label: rows for label, rows in by_class.items() if len(rows) >= MIN_CLASS_ROWS}
    cap = max(MIN_CLASS_ROWS, MAX_MODEL_ROWS // max(1, len(kept)))
    rng = np.random.default_rng(seed)
    rows: list[int] = []
    for label in sorted(kept):
        members = kept[label]
        if len(members) > cap:
            members = [members[i] for i in np.sort(rng.choice(len(members), size=cap, replace=False))]
        rows.extend(members)
    return sorted(rows), (REFERENCE_SPLIT if has_train else "all splits"), dropped


def property_model(labels: list[str], features: np.ndarray, alpha: float, seed: int) -> dict[str, Any]:
    """Cross-validated balanced accuracy of a shallow tree on the properties, with a permutation p-value."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.tree import DecisionTreeClassifier

    classes = sorted(set(labels))
    y = np.array([classes.index(label) for label in labels])
    folds = int(min(CV_FOLDS, np.bincount(y).min()))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    model = DecisionTreeClassifier(max_depth=TREE_DEPTH, min_samples_leaf=2, class_weight="balanced",
                                   random_state=seed)
    max_permutations = int(min(MAX_PERMUTATIONS, max(99, math.ceil(2 / alpha) - 1)))  # 1/(n+1) ≤ alpha/2
    score, p_value, permutations = sequential_permutation_test(
        model, features, y, cv, "balanced_accuracy", max_permutations, seed
    )
    return {
        "balanced_accuracy": round(score, 4),
        "chance": round(1.0 / len(classes), 4),
        "lift": round(lift_over_chance(score, len(classes)), 4),
        "p_value": float(f"{p_value:.4g}"),
        "permutations": permutations,
        "max_permutations": max_permutations,
        "cv_folds": folds,
        "rows": len(labels),
        "model": f"DecisionTreeClassifier(max_depth={TREE_DEPTH}, class_weight='balanced')",
    }


def compute(ctx: AuditContext) -> Evidence:
    with one_blas_thread():
        return _compute(ctx)


def _compute(ctx: AuditContext) -> Evidence:
    started = time.perf_counter()
    alpha = ctx.config.policy.alpha  # sets how many permutations resolve the model's p-value (Check.evidence_policy)
    seed = ctx.config.seed or 0
    with_source = any(ctx.records[p].source for p in ctx.usable_positions)
    rows, rows_from, dropped = _model_rows(ctx, seed)
    labels = [ctx.records[p].label for p in rows]
    metrics: dict[str, Any] = {"rows_from": rows_from, "classes_left_out": dropped, "source_known": with_source,
                               "bounds": {"max_model_rows": MAX_MODEL_ROWS, "min_class_rows": MIN_CLASS_ROWS,
                                          "tree_depth": TREE_DEPTH, "max_categories": MAX_CATEGORIES,
                                          "quantile_bins": QUANTILE_BINS, "seed": seed}}
    if len(set(labels)) < 2:
        metrics["seconds"] = round(time.perf_counter() - started, 3)
        return skipped(f"needs at least two classes with {MIN_CLASS_ROWS}+ images in {rows_from}", **metrics)
    # Which properties go with the label, and how.
    continuous, categorical = _columns(ctx, rows, with_source)
    per_property: dict[str, dict] = {}
    for name, values in [*continuous.items(), *categorical.items()]:
        is_continuous = name in continuous
        test = association(labels, _binned(values) if is_continuous else values)
        if test is None:
            continue
        per_property[name] = {"p_value": test["p_value"], "cramers_v": test["cramers_v"],
                              "how": continuous_sentence(name, labels, values) if is_continuous
                              else category_sentence(name, test),
                              "kind": "continuous (quantile-binned)" if is_continuous else "categorical"}
    adjusted = holm([r["p_value"] for r in per_property.values()]) if per_property else []
    for r, p in zip(per_property.values(), adjusted):
        r["p_value_holm"] = float(f"{p:.4g}")
    metrics["properties"] = per_property
    # The model on all properties together.
    metrics["model"] = property_model(labels, _feature_matrix(continuous, categorical), alpha, seed)
    if with_source:
        metrics["sources"] = _source_evidence(ctx)
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    return Evidence(summary="", metrics=metrics)  # the judge words it: the sentences depend on the thresholds


def _source_evidence(ctx: AuditContext) -> dict[str, Any]:
    """Source × class (all splits, one row per content per split), source composition per split, and the tests."""
    seen: dict[tuple[str, str, str], int] = {}
    for p in ctx.usable_positions:
        record = ctx.records[p]
        seen.setdefault((ctx.encoded.record_sha[p], record.split, record.label), p)
    positions = sorted(seen.values())
    sources = [ctx.records[p].source or NONE for p in positions]
    labels = [ctx.records[p].label for p in positions]
    splits = [ctx.records[p].split for p in positions]
    table: dict[str, dict[str, int]] = {}
    for source, label in zip(sources, labels):
        table.setdefault(source, {}).setdefault(label, 0)
        table[source][label] += 1
    composition: dict[str, dict[str, int]] = {}
    for source, split in zip(sources, splits):
        composition.setdefault(split, {}).setdefault(source, 0)
        composition[split][source] += 1
    metrics: dict[str, Any] = {"sources": sorted(set(sources)), "source_by_class": table,
                               "split_composition": composition}
    test = association(labels, sources)
    if test is not None:
        metrics["source_vs_class"] = {"p_value": test["p_value"], "cramers_v": test["cramers_v"],
                                      "how": category_sentence("source", test)}
    reference = composition.get(REFERENCE_SPLIT, {})
    split_tests: dict[str, dict] = {}
    for split in ctx.index.held_out_splits:
        held = composition.get(split, {})
        if not held or not reference:
            continue
        pair = association([REFERENCE_SPLIT] * sum(reference.values()) + [split] * sum(held.values()),
                           [s for s, n in reference.items() for _ in range(n)] + [s for s, n in held.items() for _ in range(n)])
        entry = {"sources": len(held), "unseen_in_train": sorted(set(held) - set(reference))}
        if pair is not None:
            entry.update(p_value=pair["p_value"], cramers_v=pair["cramers_v"])
        split_tests[split] = entry
    metrics["split_tests"] = split_tests
    return metrics


def judge(evidence: Evidence, policy: Policy) -> Verdict:
    """Warn when the properties predict the label (p < alpha, lift ≥ min_shortcut_lift), when the source goes
    with the class, or when a held-out split's sources differ from train's (Cramér's V ≥ min_cramers_v)."""
    metrics = copy.deepcopy(evidence.metrics)
    alpha = policy.alpha
    rows_from, per_property, model = metrics["rows_from"], metrics["properties"], metrics["model"]
    for r in per_property.values():
        r["carries_signal"] = bool(r["p_value_holm"] < alpha and r["cramers_v"] >= policy.min_cramers_v)
    signal = sorted((n for n, r in per_property.items() if r["carries_signal"]), key=lambda n: -per_property[n]["cramers_v"])
    metrics["properties_with_signal"] = signal
    shortcut = model["p_value"] < alpha and model["lift"] >= policy.min_shortcut_lift
    metrics["shortcut"] = shortcut
    metrics["policy"] = {"alpha": alpha, "min_shortcut_lift": policy.min_shortcut_lift, "min_cramers_v": policy.min_cramers_v}
    how = "; ".join(per_property[n]["how"] for n in signal[:3])
    findings: list[Finding] = []
    model_text = (f"file properties alone predict the label in {rows_from} with balanced accuracy "
                  f"{model['balanced_accuracy']:.2f} (chance {model['chance']:.2f}, p = {model['p_value']:.2g})")
    if shortcut:
        findings.append(Finding(
            id=stable_finding_id(CHECK_ID, "label_from_properties", [rows_from]),
            severity=Severity.WARNING,
            message=f"{model_text}: a model can learn these instead of the content" + (f" ({how})" if how else "")
            + f" (policy: warn when p < {alpha:g} and lift over chance ≥ {policy.min_shortcut_lift:g}; "
            f"lift {model['lift']:.2f})",
            paths=[],
            evidence={**model, "properties_with_signal": {n: per_property[n] for n in signal}},
        ))
        sentences = [model_text + (f": {how}" if how else "")]
    elif model["p_value"] < alpha:
        sentences = [f"file properties carry a weak signal about the label in {rows_from}: balanced accuracy "
                     f"{model['balanced_accuracy']:.2f} (chance {model['chance']:.2f}, p = {model['p_value']:.2g}, "
                     f"lift {model['lift']:.2f})" + (f"; {how}" if how else "")]
    else:
        sentences = [f"file properties do not predict the label in {rows_from} beyond chance: balanced accuracy "
                     f"{model['balanced_accuracy']:.2f} (chance {model['chance']:.2f}, p = {model['p_value']:.2g})"
                     + (f"; {how}" if how else "")]
    if "sources" in metrics:
        source_findings, source_text = _source_judgement(metrics["sources"], policy)
        findings.extend(source_findings)
        sentences.append(source_text)
    else:
        sentences.append("source unknown (give a manifest source column or --source-depth N)")
    return Verdict(Status.WARN if findings else Status.PASS, summary="; ".join(sentences),
                   policy=f"warn when p < {alpha:g} and lift over chance ≥ {policy.min_shortcut_lift:g}, or "
                          f"source/class Cramér's V ≥ {policy.min_cramers_v:g}",
                   findings=findings, metrics=metrics)


def _source_judgement(metrics: dict[str, Any], policy: Policy) -> tuple[list[Finding], str]:
    findings: list[Finding] = []
    texts: list[str] = []

    def material(test: dict) -> bool:
        return test["p_value"] < policy.alpha and test["cramers_v"] >= policy.min_cramers_v

    test = metrics.get("source_vs_class")
    if test is not None:
        texts.append(f"source and class: Cramér's V {test['cramers_v']:.2f} (p = {test['p_value']:.2g})")
        if material(test):
            findings.append(Finding(
                id=stable_finding_id(CHECK_ID, "source_predicts_class", ["source"]),
                severity=Severity.WARNING,
                message=f"the source goes with the class (Cramér's V {test['cramers_v']:.2f}, p = {test['p_value']:.2g}): "
                f"{test['how']}; a model can learn the source instead of the class",
                paths=[],
                evidence=dict(test),
            ))
    else:
        texts.append(f"{len(metrics['sources'])} source(s)")
    composition = metrics["split_composition"]
    reference = composition.get(REFERENCE_SPLIT, {})
    for split, entry in metrics["split_tests"].items():
        held = composition[split]
        if len(held) == 1 and len(reference) > 1:
            only = next(iter(held))
            findings.append(Finding(
                id=stable_finding_id(CHECK_ID, "single_source_split", [split]),
                severity=Severity.WARNING,
                message=f"{split} is drawn from one source only ({only!r}), while {REFERENCE_SPLIT} has "
                f"{len(reference)}: its accuracy says little about the other sources",
                paths=[],
                evidence={"split": split, "source": only, "reference_sources": sorted(reference)},
            ))
            texts.append(f"{split} drawn from {only!r} only")
        elif "p_value" in entry and material(entry):
            unseen = entry["unseen_in_train"]
            findings.append(Finding(
                id=stable_finding_id(CHECK_ID, "source_mix_differs", [split]),
                severity=Severity.WARNING,
                message=f"{split}'s sources differ from {REFERENCE_SPLIT}'s (Cramér's V {entry['cramers_v']:.2f}, "
                f"p = {entry['p_value']:.2g})" + (f"; not in {REFERENCE_SPLIT}: {', '.join(map(repr, unseen))}" if unseen else ""),
                paths=[],
                evidence={"split": split, **entry, "composition": held, "reference_composition": reference},
            ))
            texts.append(f"{split}'s source mix differs (V {entry['cramers_v']:.2f})")
    return findings, "; ".join(texts)


CHECK = Check(CHECK_ID, compute, judge, evidence_policy=("alpha",))
