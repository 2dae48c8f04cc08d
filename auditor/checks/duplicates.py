"""`exact_duplicates` and `near_duplicates`: the same image more than once."""

from __future__ import annotations

from auditor.checks.common import group_id, members, percent, plural, quoted_paths
from auditor.context import AuditContext
from auditor.report import CheckResult, Finding, Severity, Status

EXACT_KINDS = ("pixels",)
ALL_KINDS = ("pixels", "hash", "embedding", "correlation")


def _redundant(groups: list[list[int]]) -> int:
    return sum(len(g) - 1 for g in groups)


def run_exact(ctx: AuditContext) -> CheckResult:
    groups = ctx.record_groups(EXACT_KINDS)
    findings = []
    for group in groups:
        kinds = {kind for pair in ctx.group_evidence(group) for kind in pair["kinds"]}
        how = "identical bytes" if kinds == {"bytes"} else "identical pixels" if "bytes" not in kinds else "identical bytes or pixels"
        splits = sorted({ctx.records[p].split for p in group})
        findings.append(
            Finding(
                id=group_id(ctx, "exact_duplicates", "group", group),
                severity=Severity.WARNING,
                message=f"{len(group)} copies of one image ({how}"
                + (f", across {' and '.join(splits)}" if len(splits) > 1 else "")
                + f"): {quoted_paths(ctx, group)}",
                paths=[ctx.records[p].path for p in group],
                evidence={"members": members(ctx, group), "pairs": ctx.group_evidence(group)},
            )
        )
    usable = len(ctx.usable_positions)
    redundant = _redundant(groups)
    share = percent(redundant, usable)
    limit = ctx.config.policy.exact_duplicates_max_percent
    status = Status.WARN if share > limit else Status.PASS
    summary = (
        f"{plural(len(groups), 'group')} of exact duplicates: {redundant} redundant "
        f"{'copy' if redundant == 1 else 'copies'} ({share} % of images) (policy: warn above {limit} %)"
        if groups
        else "no two images are identical"
    )
    return CheckResult(
        id="exact_duplicates",
        status=status,
        summary=summary,
        metrics={"groups": len(groups), "images_in_groups": sum(map(len, groups)), "redundant_images": redundant,
                 "redundant_percent": share},
        findings=findings,
    )


def near_groups(ctx: AuditContext) -> list[list[int]]:
    """Groups joined by near-duplicate evidence: some pair inside is not merely an exact copy."""
    groups = []
    for group in ctx.record_groups(ALL_KINDS, include_byte_identical=False):
        pairs = ctx.group_evidence(group)
        if any(not {"pixels", "bytes"} & set(pair["kinds"]) for pair in pairs):
            groups.append(group)
    return groups


def decision_text(ctx: AuditContext) -> str:
    """The rule in words, e.g. "scaled cosine ≥ 0.61 or aligned pixel correlation ≥ 0.890"."""
    rule = ctx.duplicate_decision.rule
    parts = []
    if rule.min_scaled is not None:
        parts.append(f"scaled cosine ≥ {rule.min_scaled:.2f}")
    if rule.min_cosine is not None:
        parts.append(f"cosine ≥ {rule.min_cosine:.3f}")
    if rule.min_correlation is not None:
        parts.append(f"aligned pixel correlation ≥ {rule.min_correlation:.3f}")
    if rule.hash_alone:
        parts.append(f"pHash ≤ {ctx.config.max_phash_distance} and dHash ≤ {ctx.config.max_dhash_distance} "
                     "(any rotation or mirroring)")
    return " or ".join(parts) or "identical pixels only"


def interval_text(value: float | None, interval: list | tuple | None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.0%}"
    return text + (f" [{interval[0]:.0%}, {interval[1]:.0%}]" if interval else "")


def detection_quality(ctx: AuditContext, estimate) -> dict:
    """Estimated recall and precision of the decision, with 95 % intervals and how they were measured."""
    decision = ctx.duplicate_decision
    quality = estimate.as_dict()
    quality.update({
        "estimated_precision": quality["precision"],  # the key older reports used
        "calibration_images": ctx.calibration.sample_images,
        "calibration_copies": decision.choice.copies,
        "per_transform": decision.choice.per_kind_recall,
        "method": "copies of the dataset's own images made like real leaks (same shot re-processed: crop, shift, "
                  "rescale, colour, JPEG; rotations; grey) give recall; the copies' matches with other images "
                  "(not counting images the decision calls duplicates of the source) give the false-match rate; "
                  "precision = 1 - (1 - duplicate share) x false-match rate / flagged share",
        "caveat": "95 % intervals cover the sampling error of the calibration copies only; real duplicates "
                  "processed unlike the copies are found less or more often",
    })
    return quality


def run_near(ctx: AuditContext) -> CheckResult:
    decision = ctx.duplicate_decision
    choice = decision.choice
    groups = near_groups(ctx)
    findings = []
    near_pairs = 0
    for group in groups:
        pairs = ctx.group_evidence(group)
        near = [p for p in pairs if not {"pixels", "bytes"} & set(p["kinds"])]
        near_pairs += len(near)
        best = max((p.get("cosine", 0.0) for p in near), default=0.0)
        smallest = min((p.get("phash_distance", 99) for p in near), default=99)
        splits = sorted({ctx.records[p].split for p in group})
        evidence = {
            "members": members(ctx, group),
            "pairs": pairs[:500],
            "max_cosine": round(best, 4) if best else None,
            "max_correlation": max((p.get("correlation", 0.0) for p in near), default=None),
            "min_phash_distance": smallest if smallest < 99 else None,
        }
        findings.append(
            Finding(
                id=group_id(ctx, "near_duplicates", "group", group),
                severity=Severity.WARNING,
                message=f"{len(group)} near-identical images"
                + (f" across {' and '.join(splits)}" if len(splits) > 1 else "")
                + f" ({_strength(near)}): {quoted_paths(ctx, group)}",
                paths=[ctx.records[p].path for p in group],
                evidence=evidence,
            )
        )
    usable = len(ctx.usable_positions)
    redundant = _redundant(groups)
    share = percent(redundant, usable)
    limit = ctx.config.policy.near_duplicates_max_percent
    quality = detection_quality(ctx, choice.near)
    status = Status.WARN if share > limit else Status.PASS
    threshold_text = decision_text(ctx)
    quality_text = (f"; estimated recall {interval_text(quality['recall'], quality['recall_interval'])}"
                    + (f", precision {interval_text(quality['precision'], quality['precision_interval'])}"
                       if groups and quality["precision"] is not None else ""))
    unreliable = [f"{name} tier not used ({tier['note']})" for name, tier in choice.tiers.items()
                  if not tier.get("used") and tier.get("note") not in (None, "no embeddings", "no hash matches")]
    summary = (
        f"{plural(len(groups), 'group')} of near-duplicates, {plural(redundant, 'redundant image')} ({share} %) "
        f"at {threshold_text}{quality_text} (policy: warn above {limit} %)"
        if groups
        else f"no near-duplicates at {threshold_text}{quality_text}"
    ) + ("; " + "; ".join(unreliable) if unreliable else "")
    rule = choice.rule
    return CheckResult(
        id="near_duplicates",
        status=status,
        summary=summary,
        metrics={
            "groups": len(groups),
            "images_in_groups": sum(map(len, groups)),
            "redundant_images": redundant,
            "redundant_percent": share,
            "near_pairs": near_pairs,
            "thresholds": {
                "max_phash_distance": ctx.config.max_phash_distance,
                "max_dhash_distance": ctx.config.max_dhash_distance,
                "min_cosine": rule.min_cosine,
                "min_scaled_cosine": rule.min_scaled,
                "min_correlation": rule.min_correlation,
                "hash_alone": rule.hash_alone,
                "min_cosine_source": "given by the user" if ctx.config.min_cosine is not None else choice.reason,
                "min_correlation_source": "given by the user" if ctx.config.min_correlation is not None else choice.reason,
                "rule": threshold_text,
            },
            "tiers": choice.tiers,
            "detection_quality": quality,
        },
        findings=findings,
    )


def _strength(pairs: list[dict]) -> str:
    cosines = [p["cosine"] for p in pairs if "cosine" in p]
    hashes = [p["phash_distance"] for p in pairs if "phash_distance" in p]
    correlations = [p["correlation"] for p in pairs if "correlation" in p]
    parts = []
    if cosines:
        parts.append(f"cosine up to {max(cosines):.3f}")
    if correlations:
        parts.append(f"pixel correlation up to {max(correlations):.3f}")
    rotated = sorted({p["transform"] for p in pairs if "rotated" in p.get("transform", "")})
    if rotated:
        parts.append(", ".join(rotated))
    if hashes:
        parts.append(f"pHash distance {min(hashes)}")
    if any(p.get("mirrored") for p in pairs):
        parts.append("mirrored")
    return ", ".join(parts) or "near"
