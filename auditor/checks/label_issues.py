"""`label_issues`: how many labels are wrong (with an interval), and which images probably carry one.

The evidence is the shared label analysis (`auditor/analysis/labels.py`, `ctx.label_analysis`): a
cross-validated probe on the cached embeddings, the label-noise model on its out-of-fold probabilities, and
k-NN label agreement. An image is *probably mislabelled* when its label is more likely wrong than right under
the model; the finding is a `warning` (strong evidence) when the estimate is supported and the image is among the
round(η̂ · n) likeliest wrong labels, ranked by the probe and its neighbours' votes together (`strong_evidence` in
`auditor/analysis/labels.py`; such an image is listed even when its P(wrong) alone is below ½). When it is not supported, the check says that label errors cannot be
told apart from the probe's confusion, gives only the interval, makes no accuracy ceiling claim and lists its
candidates as `info` — none where the probe does no better than always guessing the largest class.
"""

from __future__ import annotations


import numpy as np

from auditor.analysis.labels import (MIN_IMAGES_PER_CLASS, NEIGHBOURS_DISAGREE, analyse, class_pair_noise,
                                     label_noise_by_split, normalised_margin)
from auditor.checks.common import percent, plural
from auditor.context import AuditContext
from auditor.checks.base import Check, Evidence, Verdict, skipped
from auditor.config import Policy
from auditor.report import Finding, Severity, Status, stable_finding_id

CHECK_ID = "label_issues"
# The probe: logistic regression on PCA-whitened embeddings, C (inverse L2 strength) picked by out-of-fold
# log loss. A fixed C = 1 on raw unit-length embeddings was far too strong for 10 classes (digits: 85 %
# accurate, 95 % with this probe) and soft probabilities hide label errors among confusion.
# Supported: the interval of the noise rate is at most 2 points wide, or no wider than the estimate itself
# (measured: native and 64 px photos, digits: supported at 0.5–10 % planted; 32 px ants/bees never).
# The probe's accuracy against the true labels (expected under the noise model) below which the estimate is
# not supported whatever its interval is the setting `label_min_probe_accuracy` (default 0.80): the model
# tells confusion from noise by the shape of the probe's tails, and the weaker the probe, the more of the
# data lives where that shape is an assumption (estimates within ×1.5 measured down to ~81 % on 32 px photos).


# ---------------------------------------------------------------------------------------------
# Confident learning: pure numpy on (probabilities, given labels) — kept for comparison
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# The analysis over an audit context (computed once per context, reused by gap attribution)
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------------


def _pct(share: float) -> str:
    return f"{100 * share:.1f}" if share >= 0.001 or share == 0 else f"{100 * share:.2f}"


def compute(ctx: AuditContext) -> Evidence:
    analysis = analyse(ctx)
    if analysis.skipped_reason:
        return skipped(f"skipped: {analysis.skipped_reason}", excluded_classes=analysis.excluded_classes)
    noise = analysis.noise
    strong = analysis.strong
    margins = normalised_margin(analysis.probs, analysis.unit_labels)
    findings = sorted((_finding(ctx, analysis, int(u), margins, strong) for u in np.flatnonzero(analysis.issues)),
                      key=lambda item: item[0])
    confirmed = sum(len(analysis.unit_positions[u]) for u in np.flatnonzero(analysis.issues) if strong[u])
    by_split = label_noise_by_split(ctx)
    flagged_images = sum(m["probably_wrong"] for m in by_split.values())
    judged_images = sum(m["images"] for m in by_split.values())
    accuracy = analysis.stats["probe_accuracy"]
    low, high = analysis.noise_interval
    strong_units = np.flatnonzero(strong)
    expected_precision = float(analysis.wrong_probability[strong_units].mean()) if strong_units.size else None
    parts = _summary_parts(ctx, analysis, by_split, flagged_images, judged_images, confirmed)
    summary = "; ".join(parts)
    metrics = {
        "method": "label-noise model on out-of-fold probabilities of a logistic-regression probe (PCA-whitened "
                  "embeddings, C by out-of-fold log loss): P(label) = (1 − η)·q + η/(K − 1)·(1 − q), q the probe's "
                  "tempered probabilities; η by maximum likelihood with a profile-likelihood interval; "
                  "k-NN label agreement",
        "supported": analysis.supported,
        "reason": analysis.reason,
        "noise_rate": round(noise.rate, 5),
        "noise_rate_interval": [round(low, 5), round(high, 5)],
        "noise_rate_interval_top_from": analysis.interval_top_from,
        "noise_rate_profile_interval": [round(noise.interval[0], 5), round(noise.interval[1], 5)],
        "noise_rate_level": noise.level,
        # the check of the estimate's assumption: the rate read as if wrong labels concentrated between classes
        "noise_rate_if_concentrated": (None if analysis.concentrated is None else {
            "rate": round(analysis.concentrated.rate, 5),
            "interval": [round(v, 5) for v in analysis.concentrated.interval]}),
        "noise_model_temperature": round(noise.temperature, 4),
        "noise_fit_samples": noise.samples,
        "estimated_noise_percent": round(100 * noise.rate, 2),
        "folds": analysis.folds,
        "neighbours_k": analysis.neighbours_k,
        "classes": analysis.classes,
        "excluded_classes": analysis.excluded_classes,
        "unique_samples": len(analysis.unit_shas),
        "images": judged_images,
        "flagged": flagged_images,
        "flagged_percent": percent(flagged_images, judged_images),
        "strong_evidence": confirmed,
        "strong_evidence_expected_precision": round(expected_precision, 4) if expected_precision is not None else None,
        # Not printed in the summary: it is no estimate of the findings' precision (see the note).
        "strong_evidence_expected_precision_note": "the mean P(wrong) of the strong findings under the probe alone; it "
                                                   "ignores the neighbours' votes that also chose them, so it is not "
                                                   "their precision (measured on planted flips: from 0.49 too low to "
                                                   "0.22 too high, mostly too low on photos)",
        "strong_evidence_rule": "the round(noise_rate × unique_samples) likeliest wrong labels, ranked by the odds of "
                                "P(wrong) × the neighbours' likelihood ratio (estimated from the data)",
        "probe_accuracy": round(accuracy, 4),
        "probe_chance_accuracy": round(analysis.stats["probe_chance_accuracy"], 4),
        "probe_chance_p_value": float(f"{analysis.stats['probe_chance_p_value']:.4g}"),
        "probe_beats_chance": analysis.beats_chance,
        "probe_accuracy_true_labels": round(analysis.stats["probe_accuracy_true_labels"], 4),
        "probe_c": analysis.stats["probe_c"],
        "probe_dims": analysis.stats["probe_dims"],
        "probe_fit_images": analysis.stats["probe_fit_images"],
        "class_pair_noise": class_pair_noise(analysis),
        "per_split": by_split,
        "neighbour_search": analysis.stats.get("neighbour_search"),
    }
    return Evidence(summary=summary, metrics=metrics, findings=[finding for _key, finding in findings])


FULL_INPUT_SIZE = 224  # the backbones' own input side


def _reduced_input_size(ctx: AuditContext) -> int | None:
    """The backbone's input side when the audit shrank it below the backbone's own for small images (which costs
    the probe accuracy: bench_label_issues, 32 px photos, 77 % at 96 px against 82 % at 224), else None."""
    size = getattr(ctx.backbone, "input_size", None)
    return size if isinstance(size, int) and size < FULL_INPUT_SIZE else None


def _summary_parts(ctx: AuditContext, analysis, by_split: dict, flagged: int, judged: int,
                   confirmed: int) -> list[str]:
    noise, (low, high) = analysis.noise, analysis.noise_interval
    if analysis.supported:
        widened = (", its top read as if wrong labels went to similar classes"
                   if analysis.interval_top_from == "concentrated" else "")
        parts = [f"label noise {_pct(noise.rate)} % (95 % interval {_pct(low)}–{_pct(high)} %{widened})",
                 f"{plural(flagged, 'image')} of {judged} probably {'carries' if flagged == 1 else 'carry'} the wrong "
                 "label" + (f", {confirmed} with strong evidence (the likeliest wrong labels by probe and neighbours, "
                            "as many as the estimate)" if confirmed else "")]
    else:
        parts = [f"label errors cannot be told apart from the probe's confusion: between {_pct(low)} and "
                 f"{_pct(high)} % of labels may be wrong (95 %), no accuracy ceiling claimed"
                 + (f"; {plural(flagged, 'candidate')} listed for review" if flagged else "")]
        if not analysis.beats_chance:
            stats = analysis.stats
            parts.append(f"no candidates named: the probe does no better than always guessing the largest class "
                         f"({100 * stats['probe_chance_accuracy']:.1f} % of the images; one-sided binomial p = "
                         f"{stats['probe_chance_p_value']:.2g})")
        reduced = _reduced_input_size(ctx)
        if reduced:
            parts.append(f"the images were embedded at {reduced} px, below the backbone's own; a {FULL_INPUT_SIZE} px input "
                         f"(--embedding-input-size {FULL_INPUT_SIZE}, ≈ {(FULL_INPUT_SIZE / reduced) ** 2:.0f}× the "
                         "embedding time) gave the probe 4–6 more points on 32 px photos, enough there to separate "
                         "the classes (bench/bench_label_issues.py)")
    parts.append(f"out-of-fold probe accuracy {100 * analysis.stats['probe_accuracy']:.1f} %")
    for split in ctx.index.held_out_splits:
        m = by_split.get(split)
        if m and m["images"] and analysis.supported:
            ceiling = m["accuracy_ceiling_interval"]
            parts.append(f"{split}: about {m['estimated_percent']} % of labels wrong, accuracy ceiling "
                         f"{100 * m['accuracy_ceiling']:.1f} % ({100 * ceiling[0]:.1f}–{100 * ceiling[1]:.1f} %)")
    search = analysis.stats.get("neighbour_search")
    if search and not search["exact"]:
        parts.append(f"neighbours by approximate search (recall@{search['k']} {search['recall']:.3f} against exact "
                     f"search on {search['queries_measured']} sampled images)")
    if analysis.excluded_classes:
        parts.append(f"not judged (fewer than {MIN_IMAGES_PER_CLASS} images): "
                     + ", ".join(f"{c!r} ({n})" for c, n in analysis.excluded_classes.items()))
    return parts


def _finding(ctx: AuditContext, analysis, u: int, margins: np.ndarray,
             strong_units: np.ndarray) -> tuple[tuple, Finding]:
    """(sort key, finding) of one probably mislabelled content: most certain first, strong evidence first.
    Reads unit u only: `analysis`' per-unit properties (label_quality, strong) compute over every unit, which
    once per finding was quadratic (10⁶ units, thousands of findings)."""
    strong = bool(strong_units[u])
    given = analysis.classes[analysis.unit_labels[u]]
    suggested_index = int(analysis.suggested[u])
    suggested = analysis.classes[suggested_index]
    agreement = float(analysis.neighbour_agreement[u])
    positions = analysis.unit_positions[u]
    paths = [ctx.records[p].path for p in positions]
    k = analysis.neighbours_k
    agreeing = int(round(agreement * k)) if np.isfinite(agreement) else None
    neighbours_text = (f"{agreeing} of {k} nearest images are {given!r}" if agreeing is not None
                       else "no neighbours to compare")
    wrong = float(analysis.wrong_probability[u])
    top = float(analysis.wrong_probability_at_top[u])
    wrong_text = f"{wrong:.2f}" if analysis.supported else f"{wrong:.2f}, up to {top:.2f} at the top of the interval"
    quality = float(analysis.probs[u, analysis.unit_labels[u]])  # label_quality of unit u alone
    message = (f"filed as {given!r}, looks like {suggested!r} (P(label wrong) = {wrong_text}; "
               f"p({suggested}) = {analysis.probs[u, suggested_index]:.2f}, p({given}) = {quality:.2f}; "
               f"{neighbours_text}): {', '.join(paths[:3])}"
               + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
               + ("" if analysis.supported else " (candidate only: the probe cannot tell label errors from its "
                  "own confusion here)"))
    finding = Finding(
        id=stable_finding_id(CHECK_ID, "label", [analysis.unit_shas[u], f"label={given}"]),
        severity=Severity.WARNING if strong else Severity.INFO,
        message=message,
        paths=paths,
        evidence={
            "score": round(wrong, 4),
            "score_name": "probability that the given label is wrong (noise model on out-of-fold probe probabilities)",
            "wrong_probability_interval": [round(float(analysis.wrong_probability_range[0][u]), 4),
                                           round(float(analysis.wrong_probability_range[1][u]), 4)],
            "wrong_probability_at_top": round(top, 4),
            "label_quality": round(quality, 4),
            "given_label": given,
            "suggested_label": suggested,
            "suggested_probability": round(float(analysis.probs[u, suggested_index]), 4),
            "normalised_margin": round(float(margins[u]), 4),
            "neighbour_agreement": round(agreement, 4) if np.isfinite(agreement) else None,
            "neighbour_majority": analysis.neighbour_majority[u],
            "neighbours_k": k,
            "neighbours_disagree": bool(np.isfinite(agreement) and agreement < NEIGHBOURS_DISAGREE),
            "supported": analysis.supported,
            "strong_evidence": strong,
            "splits": sorted({ctx.records[p].split for p in positions}),
        },
    )
    return (0 if strong else 1, -(wrong if analysis.supported else top), paths[0]), finding


def judge(evidence: Evidence, policy: Policy) -> Verdict:
    """Warn on strong evidence; fail only above the policy's share of a split, and only when the estimate is
    supported (a rate the data cannot pin down is no evidence against the labels)."""
    limit = policy.label_issues_max_percent
    metrics = evidence.metrics
    failing = [s for s, m in metrics["per_split"].items()
               if metrics["supported"] and m["images"] and m["estimated_percent"] > limit]
    status = Status.FAIL if failing else Status.WARN if metrics["strong_evidence"] else Status.PASS
    policy_text = "never fail" if limit >= 100 else f"fail above {limit:g} % of a split (when supported)"
    return Verdict(status, policy=f"warn on strong evidence, {policy_text}")


CHECK = Check(CHECK_ID, compute, judge)
