"""`image_quality`: images too dark, too bright, blurry, nearly empty, greyscale stored as RGB, or of an
odd size or shape for this dataset.

Everything is read from the properties the encode phase computed while hashing (one decode per file,
on a ≤256-px thumbnail; see `auditor.encoding.imaging.image_properties`), so no file is opened again.
Each property is compared with the dataset's own distribution by a robust z-score (median and MAD, on
a scale where the property is roughly symmetric), so a dataset of night photos or of product shots on
white does not flag itself. Brightness and information content also need an absolute guard, so a
moderately dark photo in a uniformly bright dataset is not called "too dark".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from auditor.checks.common import percent, plural
from auditor.context import AuditContext
from auditor.checks.base import Check, Evidence, Verdict, share_policy_text, share_status, skipped
from auditor.config import Policy
from auditor.report import Finding, Severity, stable_finding_id
from auditor.stats import robust_z

CHECK_ID = "image_quality"
THREE_CHANNEL_MODES = {"RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
MAX_GREYSCALE_SHARE = 0.5  # above this, greyscale is the dataset's norm, not an issue


@dataclass(frozen=True)
class Rule:
    """One issue: a per-image quantity, on a scale where it is roughly symmetric, and its direction.
    Every function takes the table of columns (name → array over images) and returns an array."""

    kind: str
    description: str
    quantity: Callable[[dict], np.ndarray]
    value: Callable[[dict], np.ndarray]  # the human-readable value in the message
    value_name: str
    direction: int  # -1: too low is the issue; +1: too high; 0: both sides
    min_scale: float  # floor on the robust scale, so a near-constant property does not flag noise
    guard: Callable[[dict, float], np.ndarray]  # absolute condition that must also hold (columns, dataset median)
    guard_text: str
    severity: Severity


def _log_side(p: dict) -> np.ndarray:
    return 0.5 * np.log(np.maximum(1, p["width"]) * np.maximum(1, p["height"]))


def _elongation(p: dict) -> np.ndarray:
    return np.maximum(p["width"], p["height"]) / np.maximum(1, np.minimum(p["width"], p["height"]))


def _highlights(p: dict) -> np.ndarray:
    """Mean + 2 SD of the grey level (≈ its 98th percentile): how bright the brightest parts are. A dark
    background with a lit subject keeps bright highlights; an under-exposed frame does not."""
    return np.clip(p["brightness"] + 2.0 * p["contrast"], 0.0, 255.0)


def _shadows(p: dict) -> np.ndarray:
    """Mean − 2 SD of the grey level (≈ its 2nd percentile): how dark the darkest parts are."""
    return np.clip(p["brightness"] - 2.0 * p["contrast"], 0.0, 255.0)


def _relative_sharpness(p: dict) -> np.ndarray:
    """Laplacian variance over grey-level variance: edge energy independent of brightness and contrast."""
    return (p["sharpness"] + 1.0) / (p["contrast"] ** 2 + 1.0)


def _always(p: dict, _m: float) -> np.ndarray:
    return np.ones(len(p["width"]), dtype=bool)


RULES = (
    Rule("dark", "too dark", lambda p: np.log1p(_highlights(p)), _highlights,
         "highlights (mean + 2 SD of grey level)", -1, 0.1, lambda p, _m: _highlights(p) < 64,
         "even the highlights are below 64 of 255", Severity.WARNING),
    Rule("bright", "too bright", lambda p: np.log(256.0 - _shadows(p)), _shadows,
         "shadows (mean − 2 SD of grey level)", -1, 0.1, lambda p, _m: _shadows(p) > 192,
         "even the shadows are above 192 of 255", Severity.WARNING),
    Rule("blurry", "blurry", lambda p: np.log(_relative_sharpness(p)), _relative_sharpness,
         "Laplacian variance / grey variance", -1, 0.1, _always, "none (relative only)", Severity.WARNING),
    Rule("low_information", "almost no information", lambda p: p["entropy"], lambda p: p["entropy"],
         "grey-level entropy (bits)", -1, 0.1, lambda p, _m: p["entropy"] < 4.0,
         "entropy below 4 bits (fewer than 16 effective grey levels)", Severity.WARNING),
    Rule("odd_size", "an odd size", _log_side, lambda p: np.sqrt(p["width"] * p["height"]),
         "side of a square of the same area (px)", 0, 0.1,
         lambda p, m: np.maximum(np.exp(_log_side(p)) / m, m / np.exp(_log_side(p))) >= 2.0,
         "side at least 2× larger or smaller than the dataset median", Severity.INFO),
    Rule("odd_aspect_ratio", "an odd aspect ratio", lambda p: np.log(_elongation(p)), _elongation,
         "aspect ratio (long side / short side)", +1, 0.1, lambda p, m: _elongation(p) / m >= 1.5,
         "at least 1.5× more elongated than the dataset median", Severity.INFO),
)
NUMERIC = ("brightness", "contrast", "sharpness", "entropy", "colourfulness")


def image_table(ctx: AuditContext) -> tuple[list[str], dict[str, np.ndarray]]:
    """Usable unique contents with the properties the rules read, as columns (one pass over the scans)."""
    shas, values = [], []
    for sha in ctx.unique_shas:
        scan = ctx.encoded.scans[sha]
        props = scan.properties
        if not props or scan.width is None or scan.height is None or "brightness" not in props:
            continue
        shas.append(sha)
        values.append((scan.width, scan.height, *(float(props.get(name) or 0.0) for name in NUMERIC),
                       bool(props.get("greyscale_as_rgb")), scan.mode in THREE_CHANNEL_MODES))
    table = np.array(values, dtype=float).reshape(len(values), 3 + len(NUMERIC) + 1)
    columns = {"width": table[:, 0], "height": table[:, 1],
               **{name: table[:, 2 + i] for i, name in enumerate(NUMERIC)},
               "greyscale_as_rgb": table[:, 2 + len(NUMERIC)].astype(bool),
               "three_channels": table[:, 3 + len(NUMERIC)].astype(bool)}
    modes = [ctx.encoded.scans[s].mode for s in shas]
    columns["mode"] = np.array(modes, dtype=object)
    return shas, columns


def evaluate_rules(rows: dict[str, np.ndarray], max_z: float) -> tuple[list[tuple[int, str, dict]], dict[str, dict]]:
    """(issues, distribution): issues are (row, kind, evidence); distribution gives each rule's median and scale.
    `rows`: the image table's columns; everything is computed on whole columns."""
    issues: list[tuple[int, str, dict]] = []
    distribution: dict[str, dict] = {}
    n = len(rows["width"]) if rows else 0
    if not n:
        return issues, distribution
    with np.errstate(divide="ignore", invalid="ignore"):
        for rule in RULES:
            quantity = np.asarray(rule.quantity(rows), dtype=float)
            values = np.asarray(rule.value(rows), dtype=float)
            z, _median, scale = robust_z(quantity, rule.min_scale)
            median_value = float(np.median(values))
            distribution[rule.kind] = {"median": round(median_value, 4), "robust_scale": round(scale, 4)}
            beyond = z < -max_z if rule.direction < 0 else z > max_z if rule.direction > 0 else np.abs(z) > max_z
            hits = np.flatnonzero(beyond & np.asarray(rule.guard(rows, median_value), dtype=bool))
            for i in hits.tolist():
                issues.append((i, rule.kind, {
                    "score": round(abs(float(z[i])), 3),
                    "score_name": f"|robust z| of {rule.value_name}",
                    "robust_z": round(float(z[i]), 3),
                    "max_z": max_z,
                    "value": round(float(values[i]), 4),
                    "value_name": rule.value_name,
                    "dataset_median": round(median_value, 4),
                    "absolute_condition": rule.guard_text,
                }))
    greyscale = rows["greyscale_as_rgb"]
    share = float(greyscale.mean())
    distribution["greyscale"] = {"share": round(share, 4), "max_share_to_flag": MAX_GREYSCALE_SHARE}
    if share <= MAX_GREYSCALE_SHARE:
        colour = np.log1p(rows["colourfulness"])
        z, _median, _scale = robust_z(colour, 0.1)
        for i in np.flatnonzero(greyscale & rows["three_channels"]).tolist():
            issues.append((i, "greyscale_as_rgb", {
                "score": round(abs(float(z[i])), 3),
                "score_name": "|robust z| of log colourfulness",
                "robust_z": round(float(z[i]), 3),
                "value": round(float(rows["colourfulness"][i]), 4),
                "value_name": "colourfulness",
                "mode": rows["mode"][i],
                "dataset_greyscale_share": round(share, 4),
            }))
    issues.sort(key=lambda issue: ([r.kind for r in RULES] + ["greyscale_as_rgb"]).index(issue[1]))
    return issues, distribution


def shown_z(evidence: dict) -> float:
    """The robust z as the message shows it: signed like the value against the dataset median. A rule's z is of
    a transformed quantity (too bright: log(256 − shadows), which falls as the shadows brighten), so its own sign
    can contradict the value printed beside it ("shadows 194.5, dataset median 14.6, robust z −13.7")."""
    size = abs(evidence["robust_z"])
    return size if evidence["value"] >= evidence["dataset_median"] else -size


DESCRIPTIONS = {rule.kind: rule.description for rule in RULES} | {"greyscale_as_rgb": "greyscale stored as colour"}
SEVERITIES = {rule.kind: rule.severity for rule in RULES} | {"greyscale_as_rgb": Severity.WARNING}


def compute(ctx: AuditContext) -> Evidence:
    shas, rows = image_table(ctx)
    if not shas:
        return skipped("skipped: no decodable images")
    config = ctx.config
    issues, distribution = evaluate_rules(rows, config.max_quality_z)
    findings: list[tuple[tuple, Finding]] = []
    kinds_of: dict[str, set[str]] = {}
    for i, kind, evidence in issues:
        sha = shas[i]
        positions = ctx.positions_by_sha[sha]
        paths = [ctx.records[p].path for p in positions]
        severity = SEVERITIES[kind]
        if severity != Severity.INFO:
            kinds_of.setdefault(sha, set()).add(kind)
        detail = (f"{evidence['value_name']} {evidence['value']:g}, dataset median {evidence['dataset_median']:g}, "
                  f"robust z {shown_z(evidence):.1f}") if kind != "greyscale_as_rgb" else \
            f"stored as {evidence['mode']}, all three channels equal; {100 * evidence['dataset_greyscale_share']:.1f} % of the dataset is greyscale"
        findings.append(((0 if severity != Severity.INFO else 1, -evidence["score"], paths[0]), Finding(
            id=stable_finding_id(CHECK_ID, kind, [sha]),
            severity=severity,
            message=f"{DESCRIPTIONS[kind]} ({detail}): " + ", ".join(paths[:3])
            + (f" and {len(paths) - 3} more" if len(paths) > 3 else ""),
            paths=paths,
            evidence={"kind": kind, **evidence, "labels": sorted({ctx.records[p].label for p in positions}),
                      "splits": sorted({ctx.records[p].split for p in positions})},
        )))
    findings.sort(key=lambda item: item[0])
    per_split = _per_split(ctx, shas, issues, kinds_of)
    total_kinds: dict[str, int] = {}
    for m in per_split.values():
        for kind, n in m["per_kind"].items():
            total_kinds[kind] = total_kinds.get(kind, 0) + n
    total = sum(m["images"] for m in per_split.values())
    affected = sum(m["with_issue"] for m in per_split.values())
    if total_kinds:
        breakdown = ", ".join(f"{n} {DESCRIPTIONS[k]}" for k, n in sorted(total_kinds.items(), key=lambda kv: (-kv[1], kv[0])))
        head = f"{plural(affected, 'image')} of {total} ({percent(affected, total)} %) flagged: {breakdown}"
    else:
        head = f"no quality issue in {total} images"
    summary = head + f" (robust z beyond {config.max_quality_z:g})"
    metrics = {"max_z": config.max_quality_z, "images": total, "with_issue": affected, "per_kind": total_kinds,
               "distribution": distribution, "per_split": per_split}
    return Evidence(summary=summary, metrics=metrics, findings=[finding for _key, finding in findings])


def _per_split(ctx: AuditContext, shas: list[str], issues: list[tuple[int, str, dict]],
               kinds_of: dict[str, set[str]]) -> dict[str, dict]:
    """Per split: images, images with an issue / a warning, images per kind, counted over records with arrays."""
    columns = ctx.columns
    node_of = ctx.node_of_sha
    table_nodes = np.fromiter((node_of[s] for s in shas), dtype=np.int64, count=len(shas))
    in_table = np.zeros(len(ctx.unique_shas), dtype=bool)
    in_table[table_nodes] = True
    any_issue = np.zeros(len(ctx.unique_shas), dtype=bool)
    warned = np.zeros(len(ctx.unique_shas), dtype=bool)
    per_kind: dict[str, np.ndarray] = {}
    for i, kind, _evidence in issues:
        node = table_nodes[i]
        any_issue[node] = True
        per_kind.setdefault(kind, np.zeros(len(ctx.unique_shas), dtype=bool))[node] = True
    for sha in kinds_of:
        warned[node_of[sha]] = True
    nodes = columns.node
    counted = columns.usable & np.where(nodes >= 0, in_table[np.maximum(nodes, 0)], False)
    per_split: dict[str, dict] = {}
    for code, split in enumerate(columns.splits):
        chosen = nodes[counted & (columns.split == code)]
        images, affected, warned_images = len(chosen), int(any_issue[chosen].sum()), int(warned[chosen].sum())
        counts = {kind: int(mask[chosen].sum()) for kind, mask in per_kind.items()}
        per_split[split] = {"images": images, "with_issue": affected, "with_warning": warned_images,
                            "percent_with_warning": percent(warned_images, images),
                            "per_kind": dict(sorted((k, v) for k, v in counts.items() if v))}
    return per_split


def judge(evidence: Evidence, policy: Policy) -> Verdict:
    """Warn on dark, bright, blurry, empty or greyscale images (odd size or shape is info only); fail only
    above the policy's share of a split (100 % by default: never)."""
    limit = policy.image_quality_max_percent
    warned = any(f.severity != Severity.INFO for f in evidence.findings)
    status = share_status(evidence, limit, "percent_with_warning", warned)
    return Verdict(status, policy="warn on dark, bright, blurry, empty or greyscale images, odd size/shape is info "
                                  f"only, {share_policy_text(limit)}")


CHECK = Check(CHECK_ID, compute, judge)
