"""Calibration copies: transformed copies of a seeded sample of the dataset's own images.

Each sampled image gets `COPIES_PER_IMAGE` copies made the way real leaks are made (auditor/similarity/
positives.py: same shot post-processed differently, rotations, grey, small shifts for tiny images). Every
copy is scanned and embedded exactly as real images are (and cached, keyed by source content + kind), and
the duplicate decision (auditor/similarity/) measures on them how often a copy finds its source (recall)
and how often it matches some other image (the false-match rate), which chooses the thresholds.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from auditor.encoding.imaging import ImageScan, ScanLimits, decode_for_embedding, scan_bytes
from auditor.encoding.thumbnails import Thumbnails
from auditor.similarity.pixels import decode_grey32
from auditor.similarity.positives import copy_kinds, make_copy

CALIBRATION_VERSION = "v6"  # v4: tiny same-shot copies are re-renders (positives.py); v5: seeded by content;
# v6: the key names the seed (another seed's copy was read back before)
COPIES_PER_IMAGE = 5
SMALL_POOL = 2_000  # images; up to this many, calibration samples SMALL_POOL_SAMPLE of them
SMALL_POOL_SAMPLE = 300
LARGE_POOL_SAMPLE = 100


def default_sample_images(pool: int) -> int:
    """How many images calibration copies when the user does not say. On a dataset of a few hundred images, the
    copies' few matches with other images are all the false-match rate is measured from, and 100 images left the
    chosen rule to chance (hymenoptera, 412 images, 15 planted leaks: recall 0.27–0.93 over four seeds, one
    estimate 0.32 too high); 300 found 14 of 15 at every seed, estimate 0.98. Above SMALL_POOL the 100-image
    sample measured within the targets (bench/bench_truth.py), and 1 500 copies would double a 3 000-image audit."""
    return SMALL_POOL_SAMPLE if pool <= SMALL_POOL else LARGE_POOL_SAMPLE


@dataclass
class Calibration:
    sample_images: int
    source: np.ndarray  # (m,) position in `shas` of each copy's source
    kind: list[str]  # (m,) how each copy was made
    vectors: np.ndarray | None  # (m, d) raw embeddings, or None without a backbone
    thumbs: np.ndarray  # (m, 32, 32) uint8 grey thumbnails
    grey: np.ndarray | None = None  # (m,) bool: the copy has no colour (ImageScan.is_grey)
    extra: dict[str, Any] = field(default_factory=dict)


def copy_key(sha: str, kind: str, number: int, seed: int) -> str:
    """The cache key of one copy: everything its pixels are made from (source, kind, number and the seed its random
    generator is seeded with; the embedding's input size is in the embedding cache's own key). A key without the
    seed read back another seed's copy, and where only some of an image's copies were cached, paired this run's
    thumbnail with the embedding of the copy cached before (the copies of `--seed` 1 and 2 on a cache shared with
    seed 0 were a mixture of both)."""
    return f"{sha}|{kind}|{number}|seed {seed}|{CALIBRATION_VERSION}"


def calibrate(
    shas: list[str],
    paths: dict[str, Path],
    scans: dict[str, ImageScan],
    thumbnails: Thumbnails,
    embeddings: dict[str, np.ndarray] | None,
    backbone: Any | None,
    cache: Any,
    sample_images: int,
    limits: ScanLimits,
    input_size: int,
    seed: int = 0,
) -> Calibration:
    """Copy a seeded sample of `shas` (COPIES_PER_IMAGE copies each), scan and embed every copy.

    The copies' scans and embeddings are cached like real images' (`copy_key`: source content, kind, number and
    seed), so a re-run over an unchanged dataset decodes and embeds nothing here either."""
    rng = np.random.default_rng(seed)
    # Sorted by content, so the sample and every copy depend on the images alone, not on the order in which
    # an entry point listed them (the command line and the Python API must agree; a cached copy must be the
    # copy this run would make).
    eligible = sorted(s for s in shas if (embeddings is None or s in embeddings) and s in thumbnails)
    chosen = sorted(rng.choice(len(eligible), size=min(sample_images, len(eligible)), replace=False)) if eligible else []
    sample = [eligible[i] for i in chosen]
    plan = {sha: copy_kinds((scans[sha].width or 0, scans[sha].height or 0), COPIES_PER_IMAGE, offset=n)
            for n, sha in enumerate(sample)}
    keys = {sha: [copy_key(sha, kind, i, seed) for i, kind in enumerate(plan[sha])] for sha in sample}
    all_keys = [k for sha in sample for k in keys[sha]]
    cached_scans = cache.get_scans(all_keys)
    vectors = cache.get_embeddings(backbone.cache_key, all_keys) if backbone is not None else {}
    node_of = {sha: i for i, sha in enumerate(shas)}
    copies: list[tuple[int, str, ImageScan, str]] = []  # (source node, kind, scan, key)
    to_embed: list[tuple[str, np.ndarray]] = []
    new_scans: list[ImageScan] = []
    for n, sha in enumerate(sample):
        complete = all(k in cached_scans and (backbone is None or k in vectors or not cached_scans[k].usable)
                       for k in keys[sha])
        image = None if complete else decode_for_embedding(paths[sha].read_bytes(), input_size)
        for i, (kind, key) in enumerate(zip(plan[sha], keys[sha])):
            if complete:
                scan = cached_scans[key]
            elif image is None:
                break
            else:
                data = make_copy(image, kind, np.random.default_rng([seed, zlib.crc32(sha.encode()), i]))
                scan, array = scan_bytes(data, limits, input_size if backbone is not None else None)
                scan.sha256 = key
                new_scans.append(scan)
                if array is not None and backbone is not None and key not in vectors:
                    to_embed.append((key, array))
            if scan.usable and scan.grey32:
                copies.append((node_of[sha], kind, scan, key))
    if new_scans:
        cache.put_scans(new_scans)
    step = getattr(backbone, "batch_shape", 32)  # whole traced batches: a GPU's 256 is not padded from 32
    for start in range(0, len(to_embed), step):
        part = to_embed[start : start + step]
        computed = backbone.embed(np.stack([array for _key, array in part]))
        cache.put_embeddings(backbone.cache_key, [key for key, _array in part], computed)
        vectors.update({key: v for (key, _array), v in zip(part, computed)})
    if backbone is not None:
        copies = [c for c in copies if c[3] in vectors]
    thumbs = np.stack([decode_grey32(c[2].grey32) for c in copies]) if copies else np.zeros((0, 32, 32), np.uint8)
    return Calibration(
        sample_images=len(sample),
        source=np.array([c[0] for c in copies], dtype=np.int64),
        kind=[c[1] for c in copies],
        vectors=np.stack([vectors[c[3]] for c in copies]) if backbone is not None and copies else None,
        thumbs=thumbs,
        grey=np.array([c[2].is_grey for c in copies], dtype=bool),
    )
