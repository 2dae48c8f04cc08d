"""`outliers`: images far from everything else in embedding space — a placeholder "image not found"
picture, a blank frame, a screenshot among photos.

The score is the mean cosine distance to an image's k nearest other images (FAISS), on a log scale,
turned into a robust z-score (median and MAD of the dataset's own scores), so the cut-off adapts to
how spread out a dataset is instead of being a fixed distance. The same score within the image's own
class is reported as evidence and used to list the most isolated images of every split and class.
Held-out images far from every training image are measured too (for `split_shift`'s evidence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from auditor.checks.common import percent, plural
from auditor.config import REFERENCE_SPLIT
from auditor.context import AuditContext
from auditor.checks.base import Check, Evidence, Verdict, share_policy_text, share_status, skipped
from auditor.config import Policy
from auditor.report import Finding, Severity, stable_finding_id
from auditor.similarity.neighbours import drop_self
from auditor.stats import robust_z

CHECK_ID = "outliers"
MIN_LOG_DISTANCE_SCALE = 0.05  # a dataset of near-identical images must not turn tiny differences into outliers
MIN_CLASS_IMAGES = 5  # class-relative scores need this many images in the class
MOST_ISOLATED_PER_GROUP = 3
MIN_OUTLIER_Z = 3.5  # Iglewicz & Hoaglin's cut-off for modified z-scores
FAMILY_ALPHA = 0.05  # chance that the most isolated of n clean images is flagged, if log distances were normal


def outlier_cutoff(images: int, configured: float | None) -> tuple[float, str]:
    """The z above which an image is an outlier, and where that number comes from. Without a configured
    value it grows with the dataset: the (1 − α/n) normal quantile (Bonferroni), at least 3.5, so a clean
    dataset of any size is flagged by chance in at most about α of audits."""
    if configured is not None:
        return float(configured), "max_outlier_z, set in the configuration"
    from scipy.stats import norm

    bonferroni = float(norm.isf(FAMILY_ALPHA / max(1, images)))
    if bonferroni > MIN_OUTLIER_Z:
        return round(bonferroni, 3), f"Bonferroni for {images} images at α = {FAMILY_ALPHA:g}"
    return MIN_OUTLIER_Z, f"the usual 3.5 for modified z-scores (Bonferroni for {images} images gives {bonferroni:.2f})"


def knn_distances(unit_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each vector: mean cosine distance to its k nearest *other* vectors, the nearest one's index
    and its cosine similarity."""
    from auditor.similarity.neighbours import knn

    n = len(unit_vectors)
    k = min(k, n - 1)
    if k < 1:
        return np.full(n, np.nan), np.full(n, -1), np.full(n, np.nan)
    sims, neighbours = knn(unit_vectors, k + 1)
    sims, neighbours = drop_self(sims, neighbours, k)
    mean_distance = np.nanmean(np.where(neighbours >= 0, 1.0 - sims, np.nan), axis=1)
    nearest, nearest_sim = neighbours[:, 0], sims[:, 0].astype(float)
    return np.clip(mean_distance, 1e-6, None), nearest, nearest_sim


def isolation_scores(unit_vectors: np.ndarray, k: int) -> dict[str, np.ndarray | float]:
    """kNN distance, its robust z-score on a log scale, and each image's nearest neighbour."""
    distance, nearest, nearest_sim = knn_distances(unit_vectors, k)
    z, median, scale = robust_z(np.log(distance), MIN_LOG_DISTANCE_SCALE)
    return {"distance": distance, "z": z, "nearest": nearest, "nearest_similarity": nearest_sim,
            "median_distance": float(np.exp(median)) if np.isfinite(median) else float("nan"), "log_scale": scale}


def held_out_far_from_train(ctx: AuditContext, max_z: float | None = None) -> dict[str, dict]:
    """For each held-out split: its images whose nearest training image is farther than training images
    usually are from each other (robust z of the log distance to the nearest train image, measured
    against train's own nearest-neighbour distances, above `max_z`). For `split_shift`'s evidence."""
    from auditor.similarity.neighbours import knn

    if not ctx.has_embeddings or ctx.index.reference_split is None:
        return {}
    by_split: dict[str, list[str]] = {}
    for sha, positions in ctx.positions_by_sha.items():
        if sha in ctx.encoded.embeddings:
            for split in {ctx.records[p].split for p in positions}:
                by_split.setdefault(split, []).append(sha)
    train = by_split.get(REFERENCE_SPLIT, [])
    if len(train) < 3:
        return {}
    train_vectors = ctx.unit_embeddings(train)
    train_distance, _nearest, _sims = knn_distances(train_vectors, 1)
    _z, median, scale = robust_z(np.log(train_distance), MIN_LOG_DISTANCE_SCALE)
    result = {}
    for split in ctx.index.held_out_splits:
        shas = by_split.get(split, [])
        if not shas:
            continue
        sims, ids = knn(train_vectors, 1, queries=ctx.unit_embeddings(shas))
        distance = np.clip(1.0 - sims[:, 0], 1e-6, None)
        z = (np.log(distance) - median) / scale
        cutoff = max_z if max_z is not None else outlier_cutoff(len(shas), ctx.config.max_outlier_z)[0]
        far = [i for i in np.argsort(-z, kind="stable") if z[i] > cutoff]
        images = sum(len([p for p in ctx.positions_by_sha[s] if ctx.records[p].split == split]) for s in shas)
        far_images = sum(len([p for p in ctx.positions_by_sha[shas[i]] if ctx.records[p].split == split]) for i in far)
        result[split] = {
            "images": images,
            "far_from_train": far_images,
            "percent": percent(far_images, images),
            "train_median_nearest_distance": round(float(np.exp(median)), 4),
            "max_z": cutoff,
            "examples": [
                {"path": _first_path(ctx, shas[i], split), "nearest_train": _first_path(ctx, train[int(ids[i, 0])]),
                 "cosine": round(float(sims[i, 0]), 4), "robust_z": round(float(z[i]), 2)}
                for i in far[:10]
            ],
        }
    return result


def _first_path(ctx: AuditContext, sha: str, split: str | None = None) -> str:
    positions = ctx.positions_by_sha[sha]
    preferred = [p for p in positions if split is None or ctx.records[p].split == split] or positions
    return ctx.records[preferred[0]].path


@dataclass
class Isolation:
    """The isolation scores of every unique content with an embedding, dataset-wide and within each class."""

    shas: list[str]
    k: int
    scores: dict  # isolation_scores(): distance, z, nearest, nearest_similarity, median_distance
    class_distance: dict[tuple[int, str], float]  # (row, label) → kNN distance among that class
    class_z: dict[tuple[int, str], float]

    @property
    def row_of(self) -> dict[str, int]:
        return {sha: i for i, sha in enumerate(self.shas)}


def compute(ctx: AuditContext) -> Evidence:
    if not ctx.has_embeddings:
        return skipped("skipped: no embeddings (run with a backbone)")
    shas = [s for s in ctx.unique_shas if s in ctx.encoded.embeddings]
    if len(shas) < 3:
        return skipped("skipped: fewer than 3 images with embeddings")
    isolation = score_isolation(ctx, shas)
    max_z, cutoff_source = outlier_cutoff(len(shas), ctx.config.max_outlier_z)
    z = isolation.scores["z"]
    flagged_rows = [int(i) for i in np.argsort(-z, kind="stable") if z[i] > max_z]
    findings = [_finding(ctx, isolation, i, max_z, cutoff_source) for i in flagged_rows]
    per_split = _per_split(ctx, isolation, set(flagged_rows))
    far = held_out_far_from_train(ctx)
    total_images = sum(m["images"] for m in per_split.values())
    total_outliers = sum(m["outliers"] for m in per_split.values())
    top = int(np.argmax(z))
    parts = [
        f"{plural(total_outliers, 'image')} of {total_images} {'is' if total_outliers == 1 else 'are'} far from all "
        f"others (robust z of kNN distance > {max_z:.2f})",
        f"most isolated: {_first_path(ctx, shas[top])} (z {z[top]:.1f})",
    ]
    parts += [f"{m['far_from_train']} {split} images far from every train image" for split, m in far.items()]
    metrics = {
        "k": isolation.k,
        "max_z": max_z,
        "max_z_source": cutoff_source,
        "median_knn_distance": round(float(isolation.scores["median_distance"]), 4),
        "outliers": total_outliers,
        "per_split": per_split,
        "held_out_far_from_train": far,
    }
    return Evidence(summary="; ".join(parts), metrics=metrics, findings=findings)


def score_isolation(ctx: AuditContext, shas: list[str]) -> Isolation:
    """Isolation over the whole dataset, and the same score inside each class (a content filed under two
    labels is scored in both)."""
    vectors = ctx.unit_embeddings(shas)
    k = min(ctx.config.outlier_neighbours, len(shas) - 1)
    isolation = Isolation(shas=shas, k=k, scores=isolation_scores(vectors, k), class_distance={}, class_z={})
    row_of = isolation.row_of
    members_of: dict[str, list[int]] = {}
    for sha in shas:
        for label in sorted({ctx.records[p].label for p in ctx.positions_by_sha[sha]}):
            members_of.setdefault(label, []).append(row_of[sha])
    for label, rows in members_of.items():
        if len(rows) < MIN_CLASS_IMAGES:
            continue
        distance, _nearest, _sims = knn_distances(vectors[rows], min(k, len(rows) - 1))
        z, _median, _scale = robust_z(np.log(distance), MIN_LOG_DISTANCE_SCALE)
        for row, d, zz in zip(rows, distance, z):
            isolation.class_distance[(row, label)], isolation.class_z[(row, label)] = float(d), float(zz)
    return isolation


def _finding(ctx: AuditContext, isolation: Isolation, i: int, max_z: float, cutoff_source: str) -> Finding:
    scores, k = isolation.scores, isolation.k
    sha = isolation.shas[i]
    positions = ctx.positions_by_sha[sha]
    paths = [ctx.records[p].path for p in positions]
    labels = sorted({ctx.records[p].label for p in positions})
    nearest = int(scores["nearest"][i])
    return Finding(
        id=stable_finding_id(CHECK_ID, "isolated", [sha]),
        severity=Severity.WARNING,
        message=(f"far from every other image (mean cosine distance to its {k} nearest {scores['distance'][i]:.2f}, "
                 f"dataset median {scores['median_distance']:.2f}, robust z {scores['z'][i]:.1f}): "
                 + ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")),
        paths=paths,
        evidence={
            "score": round(float(scores["z"][i]), 3),
            "score_name": f"robust z-score of the log mean cosine distance to the {k} nearest images",
            "max_z": max_z,
            "max_z_source": cutoff_source,
            "knn_distance": round(float(scores["distance"][i]), 4),
            "median_knn_distance": round(float(scores["median_distance"]), 4),
            "nearest": {"path": _first_path(ctx, isolation.shas[nearest]),
                        "cosine": round(float(scores["nearest_similarity"][i]), 4)},
            "class_relative": {label: {"knn_distance": round(isolation.class_distance[(i, label)], 4),
                                       "robust_z": round(isolation.class_z[(i, label)], 3)}
                               for label in labels if (i, label) in isolation.class_z},
            "labels": labels,
            "splits": sorted({ctx.records[p].split for p in positions}),
        },
    )


def _per_split(ctx: AuditContext, isolation: Isolation, flagged: set[int]) -> dict[str, dict]:
    """Per split: counts, and the most isolated images of every class (flagged or not) for a person to look at."""
    scores, class_z, row_of = isolation.scores, isolation.class_z, isolation.row_of
    per_split: dict[str, dict] = {}
    for split in ctx.index.splits:
        groups: dict[str, list[int]] = {}
        images = outliers = 0
        for sha in isolation.shas:
            in_split = [p for p in ctx.positions_by_sha[sha] if ctx.records[p].split == split]
            images += len(in_split)
            outliers += len(in_split) if row_of[sha] in flagged else 0
            for label in sorted({ctx.records[p].label for p in in_split}):
                groups.setdefault(label, []).append(row_of[sha])
        most_isolated = {}
        for label, rows in sorted(groups.items()):
            rows = sorted(rows, key=lambda r: -scores["z"][r])[:MOST_ISOLATED_PER_GROUP]
            most_isolated[label] = [
                {"path": _first_path(ctx, isolation.shas[r], split), "robust_z": round(float(scores["z"][r]), 2),
                 "knn_distance": round(float(scores["distance"][r]), 4),
                 "class_robust_z": round(class_z[(r, label)], 2) if (r, label) in class_z else None}
                for r in rows
            ]
        per_split[split] = {"images": images, "outliers": outliers, "percent": percent(outliers, images),
                            "most_isolated": most_isolated}
    return per_split


def judge(evidence: Evidence, policy: Policy) -> Verdict:
    """Warn on any outlier; fail only above the policy's share of a split (100 % by default: never)."""
    status = share_status(evidence, policy.outliers_max_percent, "percent", warned=bool(evidence.findings))
    return Verdict(status, policy=f"warn on any, {share_policy_text(policy.outliers_max_percent)}")


CHECK = Check(CHECK_ID, compute, judge)
