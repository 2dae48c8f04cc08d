"""Measure near-duplicate detection on the dataset itself.

Known positives are made by transforming a seeded sample of the dataset's own images (resize, JPEG
re-encode, 10 % crop, horizontal flip, ±20 % brightness). Each copy is hashed and embedded exactly as
real images are, then:
  - recall: how often the copy is found again (by the hash tier, the embedding tier, either);
  - unrelated matches: how many *other* images each copy matches (the false-match rate), which gives
    the expected number of false pairs over the whole dataset and so an estimate of precision;
  - unless the user fixed `min_cosine`, the cosine threshold is chosen from these two curves.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from auditor.encoding.imaging import ImageScan, ScanLimits, decode_for_embedding, scan_bytes
from auditor.similarity.neighbours import hex_to_codes, knn, normalise

CALIBRATION_VERSION = "v1"


def _jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _crop(image: Image.Image, fraction: float) -> Image.Image:
    w, h = image.size
    dx, dy = int(round(w * fraction / 2)), int(round(h * fraction / 2))
    return image.crop((dx, dy, w - dx, h - dy))


# name → bytes of the transformed image (saved as a high-quality JPEG unless the transform is the encoding)
TRANSFORMS: dict[str, Callable[[Image.Image], bytes]] = {
    "resize_50": lambda im: _jpeg_bytes(im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.Resampling.BILINEAR), 95),
    "jpeg_q50": lambda im: _jpeg_bytes(im, 50),
    "crop_10": lambda im: _jpeg_bytes(_crop(im, 0.10), 95),
    "hflip": lambda im: _jpeg_bytes(ImageOps.mirror(im), 95),
    "brighter_20": lambda im: _jpeg_bytes(ImageEnhance.Brightness(im).enhance(1.2), 95),
    "darker_20": lambda im: _jpeg_bytes(ImageEnhance.Brightness(im).enhance(0.8), 95),
}

# The cosine threshold is never set outside these bounds, whatever a small sample says.
MIN_COSINE_FLOOR = 0.80
MIN_COSINE_CEILING = 0.98
TARGET_RECALL = 0.95
# At most this many expected false partners per image (1 unrelated pair per 500 images).
TARGET_FALSE_MATCHES_PER_IMAGE = 0.002


@dataclass
class Calibration:
    sample_images: int
    transforms: list[str]
    hash_found: np.ndarray  # (queries,) bool: the copy matches its source by hash
    cosine_to_source: np.ndarray  # (queries,) float
    negative_cosines: np.ndarray  # (queries, k): cosines to the nearest *other* images
    negative_hash_matches: np.ndarray  # (queries,) int: other images the copy matches by hash
    transform_of_query: list[str]
    min_cosine: float | None = None
    threshold_source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def embedding_recall(self, min_cosine: float) -> float:
        return float(np.mean(self.cosine_to_source >= min_cosine)) if len(self.cosine_to_source) else float("nan")

    def false_matches_per_image(self, min_cosine: float | None) -> float:
        """Expected number of unrelated images one image matches (hash tier or embedding tier)."""
        if not len(self.negative_hash_matches):
            return float("nan")
        per_query = self.negative_hash_matches.astype(float)
        if min_cosine is not None and self.negative_cosines.size:
            per_query = per_query + (self.negative_cosines >= min_cosine).sum(axis=1)
        return float(per_query.mean())

    def summary(self, min_cosine: float | None) -> dict[str, Any]:
        per_transform = {}
        for name in self.transforms:
            mask = np.array([t == name for t in self.transform_of_query])
            if not mask.any():
                continue
            embed_hit = self.cosine_to_source[mask] >= min_cosine if min_cosine is not None else np.zeros(mask.sum(), bool)
            per_transform[name] = {
                "hash_recall": round(float(self.hash_found[mask].mean()), 3),
                "embedding_recall": round(float(embed_hit.mean()), 3) if min_cosine is not None else None,
                "recall": round(float((self.hash_found[mask] | embed_hit).mean()), 3),
                "median_cosine_to_source": round(float(np.median(self.cosine_to_source[mask])), 4)
                if self.cosine_to_source.size
                else None,
            }
        either = self.hash_found | (
            (self.cosine_to_source >= min_cosine) if min_cosine is not None else np.zeros_like(self.hash_found)
        )
        return {
            "sample_images": self.sample_images,
            "queries": int(len(self.hash_found)),
            "recall": round(float(either.mean()), 3) if len(either) else None,
            "per_transform": per_transform,
            "false_matches_per_image": round(self.false_matches_per_image(min_cosine), 5),
            "min_cosine": min_cosine,
            "threshold_source": self.threshold_source,
        }


def choose_min_cosine(cosine_to_source: np.ndarray, negative_cosines: np.ndarray) -> tuple[float, str]:
    """The threshold: low enough to find TARGET_RECALL of the known copies, but never so low that an image
    is expected to match more than TARGET_FALSE_MATCHES_PER_IMAGE unrelated images. When the two conflict,
    precision wins (a gate that cries wolf is switched off)."""
    if not len(cosine_to_source):
        return 0.95, "default (no calibration sample)"
    recall_threshold = float(np.quantile(cosine_to_source, 1.0 - TARGET_RECALL))
    candidates = np.unique(np.round(np.concatenate([negative_cosines.ravel(), [MIN_COSINE_FLOOR]]), 4))
    false_rate = np.array([(negative_cosines >= c).sum(axis=1).mean() for c in candidates])
    acceptable = candidates[false_rate <= TARGET_FALSE_MATCHES_PER_IMAGE]
    precision_threshold = float(acceptable.min()) if acceptable.size else MIN_COSINE_CEILING
    chosen = min(max(recall_threshold, precision_threshold, MIN_COSINE_FLOOR), MIN_COSINE_CEILING)
    reason = (
        f"calibrated: {TARGET_RECALL:.0%} of transformed copies at ≥ {recall_threshold:.3f}; "
        f"≤ {TARGET_FALSE_MATCHES_PER_IMAGE} unrelated matches per image at ≥ {precision_threshold:.3f}"
    )
    return round(chosen, 4), reason


def calibrate(
    shas: list[str],
    paths: dict[str, Path],
    scans: dict[str, ImageScan],
    embeddings: dict[str, np.ndarray] | None,
    backbone: Any | None,
    cache: Any,
    sample_images: int,
    max_phash: int,
    max_dhash: int,
    limits: ScanLimits,
    input_size: int,
    seed: int = 0,
) -> Calibration:
    """Transform a seeded sample of `shas`, find each copy again, and measure what else it matches.

    The copies' scans and embeddings are cached like real images' (keyed by source content + transform),
    so a re-run over an unchanged dataset decodes and embeds nothing here either."""
    rng = np.random.default_rng(seed)
    eligible = [s for s in shas if embeddings is None or s in embeddings]
    chosen = sorted(rng.choice(len(eligible), size=min(sample_images, len(eligible)), replace=False)) if eligible else []
    sample = [eligible[i] for i in chosen]
    keys = {sha: [f"{sha}|{name}|{CALIBRATION_VERSION}" for name in TRANSFORMS] for sha in sample}
    all_keys = [k for sha in sample for k in keys[sha]]
    cached_scans = cache.get_scans(all_keys)
    vectors = cache.get_embeddings(backbone.cache_key, all_keys) if backbone is not None else {}
    node_of = {sha: i for i, sha in enumerate(shas)}
    queries: list[tuple[int, str, ImageScan, str]] = []  # (source node, transform, scan, key)
    to_embed: list[tuple[str, np.ndarray]] = []
    new_scans: list[ImageScan] = []
    for sha in sample:
        complete = all(k in cached_scans and (backbone is None or k in vectors or not cached_scans[k].usable) for k in keys[sha])
        image = None if complete else decode_for_embedding(paths[sha].read_bytes(), input_size)
        for (name, transform), key in zip(TRANSFORMS.items(), keys[sha]):
            if complete:
                scan = cached_scans[key]
            elif image is None:
                break
            else:
                scan, array = scan_bytes(transform(image), limits, input_size if backbone is not None else None)
                scan.sha256 = key
                new_scans.append(scan)
                if array is not None and backbone is not None and key not in vectors:
                    to_embed.append((key, array))
            if scan.usable:
                queries.append((node_of[sha], name, scan, key))
    if new_scans:
        cache.put_scans(new_scans)
    for start in range(0, len(to_embed), 32):
        part = to_embed[start : start + 32]
        computed = backbone.embed(np.stack([array for _key, array in part]))
        cache.put_embeddings(backbone.cache_key, [key for key, _array in part], computed)
        vectors.update({key: v for (key, _array), v in zip(part, computed)})

    hash_found, negative_hash = _hash_evidence(shas, scans, queries, max_phash, max_dhash)
    cosine_to_source = np.zeros(0, dtype=np.float32)
    negative_cosines = np.zeros((len(queries), 0), dtype=np.float32)
    if backbone is not None and embeddings and queries:
        dataset_nodes = [i for i, sha in enumerate(shas) if sha in embeddings]
        row_of = {node: row for row, node in enumerate(dataset_nodes)}
        unit = normalise(np.stack([embeddings[shas[i]] for i in dataset_nodes]))
        query_unit = normalise(np.stack([vectors[q[3]] for q in queries]))
        cosine_to_source = np.einsum("ij,ij->i", query_unit, unit[[row_of[q[0]] for q in queries]])
        sims, labels = knn(unit, 11, queries=query_unit)
        negative_cosines = np.full((len(queries), 10), -1.0, dtype=np.float32)
        for qi, (source, *_rest) in enumerate(queries):
            others = [s for s, label in zip(sims[qi], labels[qi]) if label >= 0 and dataset_nodes[label] != source][:10]
            negative_cosines[qi, : len(others)] = others
    return Calibration(
        sample_images=len(sample),
        transforms=list(TRANSFORMS),
        hash_found=hash_found,
        cosine_to_source=cosine_to_source,
        negative_cosines=negative_cosines,
        negative_hash_matches=negative_hash,
        transform_of_query=[q[1] for q in queries],
    )


def _hash_evidence(shas, scans, queries, max_phash: int, max_dhash: int) -> tuple[np.ndarray, np.ndarray]:
    """For each copy: does it match its source by hash, and how many other images does it match?"""
    if not queries:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=int)
    phash = hex_to_codes([scans[s].phash for s in shas])
    dhash = hex_to_codes([scans[s].dhash for s in shas])
    found = np.zeros(len(queries), dtype=bool)
    negatives = np.zeros(len(queries), dtype=int)
    for qi, (source, _name, scan, _key) in enumerate(queries):
        best = np.zeros(len(shas), dtype=bool)
        for p_hex, d_hex in ((scan.phash, scan.dhash), (scan.phash_mirror, scan.dhash_mirror)):
            p_dist = np.unpackbits(np.bitwise_xor(phash, hex_to_codes([p_hex])), axis=1).sum(axis=1)
            d_dist = np.unpackbits(np.bitwise_xor(dhash, hex_to_codes([d_hex])), axis=1).sum(axis=1)
            best |= (p_dist <= max_phash) & (d_dist <= max_dhash)
        found[qi] = bool(best[source])
        best[source] = False
        negatives[qi] = int(best.sum())
    return found, negatives
