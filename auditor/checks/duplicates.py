"""`exact_duplicates` and `near_duplicates`: the same image more than once."""

from __future__ import annotations

from auditor.checks.base import Check, Evidence, Verdict
from auditor.checks.common import group_id, listed_pairs, members, percent, plural, quoted_paths
from auditor.config import Policy
from auditor.context import AuditContext
from auditor.report import Finding, Severity, Status
from auditor.similarity.describe import (crowding_text, decision_text, detection_quality, precision_text,
                                         recall_text)
from auditor.similarity.duplicate_graph import ALL_KINDS, EXACT_KINDS

NOT_NEAR = {"pixels", "bytes"}  # kinds of evidence that make a pair an exact copy, not a near-duplicate


def _redundant(groups: list[list[int]]) -> int:
    return sum(len(g) - 1 for g in groups)


def compute_exact(ctx: AuditContext) -> Evidence:
    groups = ctx.record_groups(EXACT_KINDS)
    findings = []
    for group, pairs in zip(groups, ctx.groups_evidence(groups)):
        kinds = {kind for pair in pairs for kind in pair["kinds"]}
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
                evidence={"members": members(ctx, group), **listed_pairs(pairs)},
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


def near_groups(ctx: AuditContext) -> list[tuple[list[int], list[dict]]]:
    """Groups joined by near-duplicate evidence (some pair inside is not merely an exact copy), each with its
    pairs' evidence (read once: it is most of this check's time at scale)."""
    groups = []
    candidates = ctx.record_groups(ALL_KINDS, include_byte_identical=False)
    for group, pairs in zip(candidates, ctx.groups_evidence(candidates)):
        if any(not NOT_NEAR & set(pair["kinds"]) for pair in pairs):
            groups.append((group, pairs))
    return groups


def candidate_search(ctx: AuditContext) -> dict | None:
    """How the embedding candidates were searched: exact, or the approximate index with its recall against exact
    search measured on a sample (the same measurement as outliers'); None without an embedding tier."""
    from auditor.similarity.evidence import BACKGROUND_RANK
    from auditor.similarity.neighbours import search_quality

    unit = ctx.duplicate_decision.data.unit
    if unit is None or len(unit) < 2:
        return None
    quality = search_quality(unit, min(BACKGROUND_RANK, len(unit) - 1)).to_dict()
    ctx.search_quality["embeddings"] = quality
    return quality


def compute_near(ctx: AuditContext) -> Evidence:
    choice = ctx.duplicate_decision.choice
    search = candidate_search(ctx)
    with_pairs = near_groups(ctx)
    groups = [group for group, _pairs in with_pairs]
    findings = []
    near_pairs = 0
    for group, pairs in with_pairs:
        finding, count = _near_finding(ctx, group, pairs)
        findings.append(finding)
        near_pairs += count
    redundant = _redundant(groups)
    share = percent(redundant, len(ctx.usable_positions))
    quality = detection_quality(ctx, choice.near)
    threshold_text = decision_text(ctx)
    quality_text = (f"; estimated recall {recall_text(quality)}"
                    + (precision_text(quality) if groups else "") + crowding_text(quality))
    unreliable = [f"{name} tier not used ({tier['note']})" for name, tier in choice.tiers.items()
                  if not tier.get("used") and tier.get("note") not in (None, "no embeddings", "no hash matches")]
    summary = (
        f"{plural(len(groups), 'group')} of near-duplicates, {plural(redundant, 'redundant image')} ({share} %) "
        f"at {threshold_text}{quality_text}"
        if groups
        else f"no near-duplicates at {threshold_text}{quality_text}"
    ) + ("; " + "; ".join(unreliable) if unreliable else "")
    chained = _chained(ctx)
    if chained["pairs"]:
        summary += (f"; {plural(chained['pairs'], 'accepted pair')} ({plural(chained['images'], 'image')}) in no group: "
                    "they chain images that are not all duplicates of each other (look-alikes that pass the rule, "
                    "or duplicates it misses); many of them mean look-alikes are common here, which the calibration "
                    "copies do not show" + (", and the precision estimate may be too high"
                                            if groups and quality["precision"] is not None else ""))
    if chained["split"] and chained["split"]["components_split_on_measured_pairs_only"]:
        summary += (f"; {plural(chained['split']['components_split_on_measured_pairs_only'], 'chained component')} "
                    f"({plural(chained['split']['images_in_them'], 'image')}) split on the pairs already measured "
                    "only (too large to measure every pair): their groups may be smaller than the true ones")
    if search is not None and not search["exact"]:
        summary += (f"; candidates by approximate search (recall@{search['k']} {search['recall']:.3f} against exact "
                    f"search on {search['queries_measured']} sampled images)")
    hashes = ctx.duplicate_decision.hash_search
    if hashes is not None and not hashes["exact"] and hashes.get("recall") is not None:
        tied = hashes["parameters"].get("recall_up_to_ties")
        ties = (f", {tied:.3f} counting another code at the same distance where several tie at the cut"
                if tied is not None and tied - hashes["recall"] >= 0.0005 else "")
        found = hashes["parameters"].get("matches_found")
        of_all = f"; {found:.3f} of all their matches" if found is not None else ""
        summary += (f"; hash candidates by approximate search (recall {hashes['recall']:.3f}{ties} against exact "
                    f"search, the mean over {hashes['parameters']['probes_with_matches']} sampled images and "
                    f"rotations with a match{of_all})")
    pixels = ctx.duplicate_decision.pixel_search
    if pixels is not None and pixels.get("recall") is not None:
        frames = pixels.get("whole_frames") or {}
        rotated = (f", under rotations recall@{frames['k']} {frames['recall']:.3f}"
                   if frames.get("recall") is not None else "")
        summary += (f"; pixel-alike candidates by approximate search (recall@{pixels['k']} {pixels['recall']:.3f}"
                    f"{rotated} against exact search on {pixels['queries_measured']} sampled images)")
    crowds = ctx.duplicate_decision.crowds
    if crowds and crowds["images_in_crowds"]:
        summary += (f"; {plural(crowds['images_in_crowds'], 'image')} in crowds of near-identical images (frames of a "
                    f"clip, burst shots, one photo stored many times; the largest {crowds['largest_crowd']}): judged "
                    "against the images beyond their crowd")
    rule = choice.rule
    return Evidence(
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
                "joint_min_scaled_cosine": rule.joint_scaled,
                "joint_min_correlation": rule.joint_correlation,
                "pixel_min_scaled_cosine": rule.pixel_min_scaled,
                "hash_alone": rule.hash_alone,
                "min_cosine_source": "given by the user" if ctx.config.min_cosine is not None else choice.reason,
                "min_correlation_source": "given by the user" if ctx.config.min_correlation is not None else choice.reason,
                "rule": threshold_text,
            },
            "tiers": choice.tiers,
            "detection_quality": quality,
            "search": search,
            "hash_search": ctx.duplicate_decision.hash_search,
            "pixel_search": pixels,
            "crowds": crowds,
            "chained": chained,
        },
        findings=findings,
    )


CHAINED_EXAMPLES = 20  # chained pairs listed by path in the report (all are counted)


def _chained(ctx: AuditContext) -> dict:
    """Accepted pairs left out of the groups (DuplicateGraph.chained_edges): how many, the images they touch,
    their share of the images in any accepted pair, the first few as paths, and how the chained components were
    split (pairs measured on demand within their budget; components split on measured pairs only)."""
    import numpy as np

    graph = ctx.duplicate_graph
    edges = graph.chained_edges()
    touched = len(np.unique(edges))
    near = graph.near()
    accepted = len(np.unique(np.concatenate([graph.a[near], graph.b[near]])))

    def path_of(node: int) -> str:
        return ctx.records[ctx.positions_by_sha[graph.shas[node]][0]].path

    return {"pairs": len(edges), "images": touched,
            "share_of_accepted_images": round(touched / accepted, 4) if accepted else 0.0,
            "examples": [[path_of(a), path_of(b)] for a, b in edges[:CHAINED_EXAMPLES].tolist()],
            "split": graph.split.to_dict() if graph.split is not None else None}


def _near_finding(ctx: AuditContext, group: list[int], pairs: list[dict]) -> tuple[Finding, int]:
    """One group's finding (`pairs`: its pairs' evidence, ctx.group_evidence), and how many near (not exact)
    pairs it holds."""
    near = [p for p in pairs if not NOT_NEAR & set(p["kinds"])]
    cosines = [p["cosine"] for p in near if "cosine" in p]
    correlations = [p["correlation"] for p in near if "correlation" in p]
    hashes = [p["phash_distance"] for p in near if "phash_distance" in p]
    splits = sorted({ctx.records[p].split for p in group})
    evidence = {
        "members": members(ctx, group),
        **listed_pairs(pairs),
        "max_cosine": round(max(cosines), 4) if cosines else None,
        "max_correlation": max(correlations) if correlations else None,
        "min_phash_distance": min(hashes) if hashes else None,
    }
    finding = Finding(
        id=group_id(ctx, "near_duplicates", "group", group),
        severity=Severity.WARNING,
        message=f"{len(group)} near-identical images"
        + (f" across {' and '.join(splits)}" if len(splits) > 1 else "")
        + f" ({_strength(near)}): {quoted_paths(ctx, group)}",
        paths=[ctx.records[p].path for p in group],
        evidence=evidence,
    )
    return finding, len(near)


def judge_near(evidence: Evidence, policy: Policy) -> Verdict:
    limit = policy.near_duplicates_max_percent
    status = Status.WARN if evidence.metrics["redundant_percent"] > limit else Status.PASS
    return Verdict(status, policy=f"warn above {limit} %" if evidence.metrics["groups"] else "")


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


EXACT_CHECK = Check("exact_duplicates", compute_exact, judge_exact)
NEAR_CHECK = Check("near_duplicates", compute_near, judge_near)
