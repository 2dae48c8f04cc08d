"""What the HTML report shows beyond report.json, computed from the audit: thumbnails, a 2-D map of
the embeddings, and image-property samples. The HTML renderer stays pure; this module reads files.

Everything is capped so a 100 000-image dataset still gives a report of a few MB: thumbnails for the
most severe findings first (with the count left out), a few thousand projected points, a few thousand
property values per split.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from auditor.report import Report

THUMB_SIDE = 112
THUMB_QUALITY = 70
MAX_THUMBNAILS = 600
MAX_PER_FINDING = 6
MAX_POINTS = 4000
MAX_PROPERTY_VALUES = 5000
PROPERTIES = ("brightness", "contrast", "sharpness", "colourfulness", "entropy")


@dataclass
class Thumbnails:
    """Report path -> data URI of a small JPEG; how many shown images were left without one."""

    images: dict[str, str] = field(default_factory=dict)
    omitted: int = 0
    failed: int = 0


def thumbnail_order(report: Report):
    """(check, finding) in the order the HTML shows them: failing checks first, new and severe findings first."""
    from auditor.formats.html import ordered_checks, ordered_findings

    for check in ordered_checks(report):
        for finding in ordered_findings(check):
            yield check, finding


def make_thumbnails(report: Report, resolve: Callable[[str], Path | None], max_images: int = MAX_THUMBNAILS,
                    per_finding: int = MAX_PER_FINDING, side: int = THUMB_SIDE,
                    findings_per_check: int | None = None) -> Thumbnails:
    """Downscaled JPEG thumbnails of the images in findings, most severe first, at most `max_images`."""
    from auditor.formats.html import FINDINGS_PER_CHECK

    limit = FINDINGS_PER_CHECK if findings_per_check is None else findings_per_check
    result = Thumbnails()
    wanted: list[str] = []
    seen: set[str] = set()
    shown_per_check: dict[str, int] = {}
    for check, finding in thumbnail_order(report):
        if shown_per_check.get(check.id, 0) >= limit:
            continue
        shown_per_check[check.id] = shown_per_check.get(check.id, 0) + 1
        for path in finding.paths[:per_finding]:
            if path not in seen:
                seen.add(path)
                wanted.append(path)
    for path in wanted:
        if len(result.images) >= max_images:
            result.omitted += 1
            continue
        source = resolve(path)
        uri = _thumbnail(source, side) if source is not None else None
        if uri is None:
            result.failed += 1
        else:
            result.images[path] = uri
    return result


def _thumbnail(path: Path, side: int) -> str | None:
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            if image.width * image.height > 100_000_000:
                return None
            image.draft("RGB", (side * 2, side * 2))  # JPEG: decode at reduced scale, much faster
            image = ImageOps.exif_transpose(image)
            image.thumbnail((side, side))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=THUMB_QUALITY, optimize=True)
    except Exception:  # a broken file simply has no thumbnail; integrity reports it
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnails_for(report: Report, ctx) -> Thumbnails:
    by_path = {record.path: record.abspath for record in ctx.records}
    return make_thumbnails(report, by_path.get)


def embedding_projection(ctx, max_points: int = MAX_POINTS, seed: int = 0) -> dict | None:
    """PCA of the (unit) embeddings to 2-D, a seeded sample of at most `max_points` images per the whole
    dataset, with each point's split: the data of the report's embedding map."""
    if not ctx.has_embeddings:
        return None
    positions = [p for p in ctx.usable_positions if ctx.encoded.record_sha[p] in ctx.encoded.embeddings]
    if len(positions) < 3:
        return None
    total = len(positions)
    if total > max_points:
        rng = np.random.default_rng(seed)
        positions = sorted(rng.choice(positions, size=max_points, replace=False).tolist())
    unit = ctx.unit_embeddings([ctx.encoded.record_sha[p] for p in positions])
    centred = unit - unit.mean(axis=0)
    _u, singular, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    variance = singular**2
    explained = (variance[:2] / variance.sum()).tolist() if variance.sum() > 0 else [0.0, 0.0]
    return {
        "x": np.round(coords[:, 0], 4).tolist(),
        "y": np.round(coords[:, 1], 4).tolist(),
        "split": [ctx.records[p].split for p in positions],
        "splits": list(ctx.index.splits),
        "explained_variance_ratio": [round(float(v), 4) for v in explained],
        "points": len(positions),
        "total": total,
    }


def property_samples(ctx, max_values: int = MAX_PROPERTY_VALUES, seed: int = 0) -> dict | None:
    """Per split, a seeded sample of image-property values (brightness, contrast, …) for histograms."""
    rng = np.random.default_rng(seed)
    result: dict[str, dict[str, list[float]]] = {}
    for split in ctx.index.splits:
        positions = [p for p in ctx.usable_positions if ctx.records[p].split == split]
        if len(positions) > max_values:
            positions = sorted(rng.choice(positions, size=max_values, replace=False).tolist())
        values: dict[str, list[float]] = {name: [] for name in PROPERTIES}
        for p in positions:
            scan = ctx.encoded.scans.get(ctx.encoded.record_sha[p])
            if scan is None:
                continue
            for name in PROPERTIES:
                value = scan.properties.get(name)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    values[name].append(float(value))
        result[split] = values
    return result or None
