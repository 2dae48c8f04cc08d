"""`exact_duplicates` and `near_duplicates`: the same image more than once."""

from __future__ import annotations

from auditor.checks.common import group_id, members, percent, plural, quoted_paths
from auditor.context import AuditContext
from auditor.similarity.duplicate_graph import ALL_KINDS, EXACT_KINDS
from auditor.checks.base import Check, Evidence, Verdict, self_judged
from auditor.config import Policy
from auditor.report import CheckResult, Finding, Severity, Status



def _redundant(groups: list[list[int]]) -> int:
    return sum(len(g) - 1 for g in groups)


def compute_exact(ctx: AuditContext) -> Evidence:
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
    summary = (
        f"{plural(len(groups), 'group')} of exact duplicates: {redundant} redundant "
        f"{'copy' if redundant == 1 else 'copies'} ({share} % of images)"
        if groups
        else "no two images are identical"
    )
    return Evidence(
        summary=summary,
        metrics={"groups": len(groups), "images_in_groups": sum(map(len, groups)), "redundant_images": redundant,
                 "redundant_percent": share},
        findings=findings,
    )


def judge_exact(evidence: Evidence, policy: Policy) -> Verdict:
    limit = policy.exact_duplicates_max_percent
    status = Status.WARN if evidence.metrics["redundant_percent"] > limit else Status.PASS
    return Verdict(status, policy=f"warn above {limit} %" if evidence.metrics["groups"] else "")


def near_groups(ctx: AuditContext) -> list[list[int]]:
    """Groups joined by near-duplicate evidence: some pair inside is not merely an exact copy."""
    groups = []
    for group in ctx.record_groups(ALL_KINDS, include_byte_identical=False):
        pairs = ctx.group_evidence(group)
        if any(not {"pixels", "bytes"} & set(pair["kinds"]) for pair in pairs):
            groups.append(group)
    return groups


def run_near(ctx: AuditContext) -> CheckResult:
    calibration = ctx.calibration
    min_cosine = calibration.min_cosine
    groups = near_groups(ctx)
    max_size = ctx.config.max_group_size
    findings = []
    near_pairs = 0
    for group in groups:
        pairs = ctx.group_evidence(group)
        near = [p for p in pairs if not {"pixels", "bytes"} & set(p["kinds"])]
        near_pairs += len(near)
        best = max((p.get("cosine", 0.0) for p in near), default=0.0)
        smallest = min((p.get("phash_distance", 99) for p in near), default=99)
        splits = sorted({ctx.records[p].split for p in group})
        oversized = len(group) > max_size
        evidence = {
            "members": members(ctx, group),
            "pairs": pairs[:500],
            "max_cosine": round(best, 4) if best else None,
            "min_phash_distance": smallest if smallest < 99 else None,
        }
        if oversized:
            evidence["note"] = (
                f"group of {len(group)} exceeds {max_size}: likely a chain of similar images rather than copies; "
                "raise the cosine threshold to split it"
            )
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
    false_rate = calibration.false_matches_per_image(min_cosine)
    expected_false_pairs = false_rate * usable / 2 if false_rate == false_rate else None
    precision = (
        round(max(0.0, 1.0 - expected_false_pairs / near_pairs), 3) if near_pairs and expected_false_pairs is not None else None
    )
    quality = calibration.summary(min_cosine)
    quality["expected_false_pairs"] = round(expected_false_pairs, 2) if expected_false_pairs is not None else None
    quality["estimated_precision"] = precision
    status = Status.WARN if share > limit else Status.PASS
    recall_text = f"; estimated recall {quality['recall']:.0%}" if quality.get("recall") is not None else ""
    precision_text = f", precision {precision:.0%}" if precision is not None else ""
    threshold_text = (
        f"pHash ≤ {ctx.config.max_phash_distance} and dHash ≤ {ctx.config.max_dhash_distance}"
        + (f", or cosine ≥ {min_cosine:.3f}" if min_cosine is not None else "")
    )
    summary = (
        f"{plural(len(groups), 'group')} of near-duplicates, {plural(redundant, 'redundant image')} ({share} %) "
        f"at {threshold_text}{recall_text}{precision_text} (policy: warn above {limit} %)"
        if groups
        else f"no near-duplicates at {threshold_text}{recall_text}"
    )
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
                "min_cosine": min_cosine,
                "min_cosine_source": calibration.threshold_source,
            },
            "detection_quality": quality,
        },
        findings=findings,
    )


def _strength(pairs: list[dict]) -> str:
    cosines = [p["cosine"] for p in pairs if "cosine" in p]
    hashes = [p["phash_distance"] for p in pairs if "phash_distance" in p]
    parts = []
    if cosines:
        parts.append(f"cosine up to {max(cosines):.3f}")
    if hashes:
        parts.append(f"pHash distance {min(hashes)}")
    if any(p.get("mirrored") for p in pairs):
        parts.append("mirrored")
    return ", ".join(parts) or "near"


EXACT_CHECK = Check("exact_duplicates", compute_exact, judge_exact)
NEAR_CHECK = self_judged("near_duplicates", run_near)
