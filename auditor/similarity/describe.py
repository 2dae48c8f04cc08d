"""The duplicate decision in words and numbers, for the checks that report it (near_duplicates, leakage)."""

from __future__ import annotations

from typing import Any


def decision_text(ctx) -> str:
    """The rule in words, e.g. "scaled cosine ≥ 0.61 or relative pixel correlation ≥ 0.890"."""
    decision = ctx.duplicate_decision
    rule = decision.rule
    # The calibrated pixel tier judges the correlation relative to both images' backgrounds (evidence.py), a
    # threshold the user gave the correlation itself.
    pixel = "relative" if decision.pairs.relative_correlation is not None else "aligned"
    parts = []
    if rule.min_scaled is not None:
        parts.append(f"scaled cosine ≥ {rule.min_scaled:.2f}")
    if rule.min_cosine is not None:
        parts.append(f"cosine ≥ {rule.min_cosine:.3f}")
    if rule.min_correlation is not None and rule.pixel_min_scaled is None:
        parts.append(f"{pixel} pixel correlation ≥ {rule.min_correlation:.3f}")
    if rule.min_correlation is not None and rule.pixel_min_scaled is not None:
        parts.append(f"{pixel} pixel correlation ≥ {rule.min_correlation:.3f} with scaled cosine ≥ "
                     f"{rule.pixel_min_scaled:.2f} (not asked of rotated or grey-against-colour pairs)")
    if rule.has_joint:
        parts.append(f"scaled cosine ≥ {rule.joint_scaled:.2f} and {pixel} pixel correlation ≥ "
                     f"{rule.joint_correlation:.3f} together")
    if rule.hash_alone:
        parts.append(f"pHash ≤ {ctx.config.max_phash_distance} and dHash ≤ {ctx.config.max_dhash_distance} "
                     "(any rotation or mirroring)")
    return " or ".join(parts) or "identical pixels only"


def interval_text(value: float | None, interval: list | tuple | None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.0%}"
    return text + (f" [{interval[0]:.0%}, {interval[1]:.0%}]" if interval else "")


def recall_text(quality: dict[str, Any]) -> str:
    """The estimated recall for a summary: "92 % [83 %, 95 %]", the interval spanning the copies' measurement and
    the dataset's own — or, where the two disagree (the dataset's interval lies wholly below the copies'), both,
    named: a bare "90 % [0 %, 92 %]" reads as a malfunction. On a dataset without duplicates the dataset's reading
    is the share of a more sensitive rule's flags (look-alikes, there) that the decision also flags, so it is low
    by construction; on one whose real duplicates are processed unlike the copies it is what warns of it."""
    copies, dataset = quality.get("recall_interval_copies"), quality.get("recall_on_dataset_interval")
    if quality["recall"] is None or copies is None or dataset is None or dataset[1] >= copies[0]:
        return interval_text(quality["recall"], quality["recall_interval"]) + _weighting_text(quality)
    images = quality.get("recall_on_dataset_images")
    return (f"{interval_text(quality['recall'], copies)} on copies of its images{_weighting_text(quality)}, but "
            f"{interval_text(quality['recall_on_dataset'], dataset)} of the "
            + (f"{images} " if images else "") + "images a more sensitive rule flags")


def _weighting_text(quality: dict[str, Any]) -> str:
    """Where the recall was weighted to the flagged images' nearness (decision.FlaggedMixRecall), a clause saying so
    and giving the copies' plain reading, which the interval spans; else ""."""
    nearness = quality.get("recall_by_nearness") or {}
    if not nearness.get("weighted") or quality.get("recall_copies_mix") is None:
        return ""
    return (f" (weighted to how near-identical the flagged images are to their partners; the copies' own mix: "
            f"{quality['recall_copies_mix']:.0%})")


def crowding_text(quality: dict[str, Any]) -> str:
    """Where look-alikes crowded every rule finding half the copies (π read at a lowered floor, see
    decision.reference_floor), a clause saying so: it is why the rule is strict and its recall low; else ""."""
    from auditor.similarity.decision import MIN_REFERENCE_RECALL

    floor = quality.get("duplicate_share_recall_floor")
    if floor is None or floor >= MIN_REFERENCE_RECALL:
        return ""
    return (f"; look-alikes crowd this dataset: rules finding half the copies also match other images often, so the "
            f"share of images with a duplicate was read at rules finding {floor:.0%} of them and the rule is strict")


def precision_text(quality: dict[str, Any]) -> str:
    """", precision 93 % [71 %, 100 %]" for a summary; why it is missing where images are flagged; else ""."""
    if quality["precision"] is not None:
        return f", precision {interval_text(quality['precision'], quality['precision_interval'])}"
    return f", precision {quality['precision_note']}" if quality.get("precision_note") else ""


def detection_quality(ctx, estimate) -> dict[str, Any]:
    """Estimated recall and precision of the decision, with 95 % intervals and how they were measured."""
    decision = ctx.duplicate_decision
    quality = estimate.as_dict()
    quality.update({
        "estimated_precision": quality["precision"],  # the key older reports used
        "calibration_images": ctx.calibration.sample_images,
        "calibration_copies": decision.choice.copies,
        "per_transform": decision.choice.per_kind_recall,
        "per_transform_interval": decision.choice.per_kind_interval,
        "method": "copies of the dataset's own images made like real leaks (same shot re-processed: crop, shift, "
                  "rescale, colour, JPEG; rotations; grey) give recall; the copies' matches with other images "
                  "(not counting images the decision calls duplicates of the source) give the false-match rate; "
                  "precision = duplicate share x recall / flagged share, the duplicate share read from the two "
                  "tiers (how many of one tier's flags the other finds again, where at least 30 images are flagged "
                  "by both and each tier confirms the other's flags about as often as it finds the copies; at the "
                  "rules the copies show fewest false matches at, else at those within that count's noise) or else "
                  "from the copies (duplicate_share_read_from); either at rules finding at least half the copies, "
                  "or a smaller share of them where the copies show significantly fewer false matches there "
                  "(duplicate_share_recall_floor): look-alikes crowd the looser rules and would inflate the share",
        "caveat": "where the images flagged are more (or less) near-identical to their partners than the copies "
                  "found (recall_by_nearness.weighted), recall is the copies' recall read in bands of how "
                  "near-identical a copy is to its source, weighted by the flagged images' bands (the copies' plain "
                  "mix is recall_copies_mix), which assumes a band's duplicates are found as often as its copies, and "
                  "the recall interval spans both copy readings' 95 % intervals "
                  "(recall_interval_copies) and the recall on the dataset's own duplicates (recall_on_dataset: of the "
                  "images the most sensitive rule without false matches on the copies flags, the share this rule "
                  "flags too, where that rule flags at least as many images as this one); where the two differ, the "
                  "dataset's duplicates are processed unlike the copies; the copies' intervals count the copies of one "
                  "source as the fewer independent ones they are worth (recall_effective_copies); the precision "
                  "interval covers the copies' sampling error only",
    })
    return quality
