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
from functools import partial
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from auditor.encoding.imaging import ImageScan, ScanLimits, decode_for_embedding, scan_bytes
from auditor.encoding.thumbnails import Thumbnails
from auditor.engines.local import WorkerPool
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


@dataclass(frozen=True)
class CopyJob:
    """The copies one sampled image still needs: made, scanned and resized in a worker (copy_key names each)."""

    path: Path
    kinds: tuple[str, ...]
    keys: tuple[str, ...]
    rng_seed: tuple[int, int]  # (seed, crc32 of the source's content); copy i draws from [*rng_seed, i]


def scanned_copies(job: CopyJob, limits: ScanLimits,
                   input_size: int | None) -> list[tuple[ImageScan, np.ndarray | None]]:
    """Each copy's scan (keyed by its copy_key) and, with `input_size`, its pixels for the backbone; [] when the
    source can no longer be read or decoded. A pure function of the job: the same copies in a thread, a process
    or this one."""
    try:
        data = Path(job.path).read_bytes()
    except OSError:  # moved or deleted since it was scanned: no copies of it
        return []
    image = decode_for_embedding(data, input_size or 224)
    if image is None:
        return []
    made = []
    for i, (kind, key) in enumerate(zip(job.kinds, job.keys)):
        scan, array = scan_bytes(make_copy(image, kind, np.random.default_rng([*job.rng_seed, i])), limits, input_size)
        scan.sha256 = key
        made.append((scan, array))
    return made


def calibrate(
    shas: list[str],
    paths: Mapping[str, Path],
    scans: dict[str, ImageScan],
    thumbnails: Thumbnails,
    embeddings: dict[str, np.ndarray] | None,
    backbone: Any | None,
    cache: Any,
    sample_images: int,
    limits: ScanLimits,
    input_size: int,
    seed: int = 0,
    pool: WorkerPool = WorkerPool(),
) -> Calibration:
    """Copy a seeded sample of `shas` (COPIES_PER_IMAGE copies each), scan and embed every copy.

    The copies' scans and embeddings are cached like real images' (`copy_key`: source content, kind, number and
    seed), so a re-run over an unchanged dataset decodes and embeds nothing here either. Copies are made on
    `pool`'s workers while this thread embeds the ones already made."""
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
    complete = {sha for sha in sample
                if all(k in cached_scans and (backbone is None or k in vectors or not cached_scans[k].usable)
                       for k in keys[sha])}
    jobs = [CopyJob(paths[sha], tuple(plan[sha]), tuple(keys[sha]), (seed, zlib.crc32(sha.encode())))
            for sha in sample if sha not in complete]
    step = getattr(backbone, "batch_shape", 32)  # whole traced batches: a GPU's 256 is not padded from 32
    made = pool.map(partial(scanned_copies, limits=limits, input_size=input_size if backbone is not None else None),
                    jobs, lookahead=max(2 * pool.workers, -(-2 * step // COPIES_PER_IMAGE)))
    node_of = {sha: i for i, sha in enumerate(shas)}
    copies: list[tuple[int, str, ImageScan, str]] = []  # (source node, kind, scan, key)
    to_embed: list[tuple[str, np.ndarray]] = []
    new_scans: list[ImageScan] = []

    def embed(part: list[tuple[str, np.ndarray]]) -> None:
        computed = backbone.embed(np.stack([array for _key, array in part]))
        cache.put_embeddings(backbone.cache_key, [key for key, _array in part], computed)
        vectors.update({key: v for (key, _array), v in zip(part, computed)})

    try:
        for sha in sample:
            if sha in complete:
                scanned = [(cached_scans[key], None) for key in keys[sha]]
            else:
                scanned = next(made)
                new_scans.extend(scan for scan, _array in scanned)
                to_embed.extend((scan.sha256, array) for scan, array in scanned
                                if array is not None and backbone is not None and scan.sha256 not in vectors)
            copies.extend((node_of[sha], kind, scan, scan.sha256) for kind, (scan, _array) in zip(plan[sha], scanned)
                          if scan.usable and scan.grey32)
            while len(to_embed) >= step:
                embed(to_embed[:step])
                del to_embed[:step]
        list(made)  # nothing is left: this lets the pool close and wait for its workers
    finally:
        made.close()  # on an error, drops the copies still queued
    if to_embed:
        embed(to_embed)
    if new_scans:
        cache.put_scans(new_scans)
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
