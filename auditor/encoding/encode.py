"""The encode phase: hash every file, ask the cache, then decode and embed only what it lacks.

Every file is read once to hash it; only contents the cache lacks are read a second time (usually
from the OS page cache) to be decoded, so bytes are never held for the whole dataset at once.

Work is keyed by file content (sha256), so identical files are decoded and embedded once, and a
re-run over an unchanged dataset decodes and embeds nothing. The decode-and-embed map runs on an
engine (local threads by default); whatever it returns is stored here, batch by batch, so a killed
run keeps everything finished so far.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from auditor.backbones import lite
from auditor.backbones.registry import Backbone
from auditor.encoding.cache import Cache
from auditor.encoding.embedding_store import StoredEmbeddings
from auditor.encoding.imaging import ImageScan, Problem, ScanLimits, sha256_hex
from auditor.encoding.reading import read_file
from auditor.encoding.thumbnails import Filling, Thumbnails
from auditor.engines import DecodeJob, EncodedBatch
from auditor.engines.local import LocalEngine, bounded_map, interruptible_threads
from auditor.engines.urls import is_url
from auditor.index.dataset import DatasetIndex, ImageRecord
from auditor.progress import Progress, SilentProgress

__all__ = ["Encoded", "encode_dataset", "bounded_map", "read_file"]


@dataclass
class Encoded:
    """Everything the checks read about the images, aligned with `index.records`."""

    record_sha: list[str | None]  # None: the file could not be read at all
    read_problems: dict[int, Problem]  # record position → why it could not be read
    scans: dict[str, ImageScan]
    embeddings: Mapping[str, np.ndarray]  # sha256 → raw float32 vector (only usable images); with a backbone a
    # StoredEmbeddings over the embedding store, whose `unit_rows(shas)` reads many rows at once
    stats: dict[str, float] = field(default_factory=dict)
    feature_maps: Any = None  # a FeatureMapStore when the fine-tune asked for the base's maps, else None
    thumbnails: Thumbnails | None = None  # given, or moved out of the scans (their grey32) when this is made
    thumbnail_folder: Path | None = None  # where a large thumbnail table's memory-mapped file goes (the cache's)

    def __post_init__(self) -> None:
        self.thumbnails = Thumbnails.taken_from(self.scans, into=self.thumbnails, order=self.record_sha,
                                                folder=self.thumbnail_folder)


@dataclass
class Hashed:
    record_sha: list[str | None]
    read_problems: dict[int, Problem]
    first_path: dict[str, str]  # content → the first readable file holding it (its record's location text)


def encode_dataset(
    index: DatasetIndex,
    cache: Cache,
    backbone: Backbone | None,
    limits: ScanLimits,
    max_file_bytes: int,
    batch_size: int = 32,
    workers: int = 2,
    progress: Progress | None = None,
    feature_maps: Any = None,
    engine: Any = None,
    other_precisions: tuple[str, ...] = (),
) -> Encoded:
    """Hash, scan and (if a backbone is given) embed every record, using and filling the cache.

    With a `FeatureMapStore` as `feature_maps`, the backbone's spatial maps are computed in the same
    pass as the embeddings (one forward pass gives both) for every image the store lacks.
    `other_precisions`: precisions the backbone may switch to when the cache holds these images' embeddings in one
    of them (`follow_cached_precision`; given when the precision was `auto`)."""
    progress = progress or SilentProgress()
    if backbone is not None:
        backbone.batch_shape = batch_size
    stats: dict[str, float] = {}
    started = time.perf_counter()
    engine = engine or LocalEngine(workers)
    hashed = hash_files(index.records, max_file_bytes, workers, progress, engine)
    stats["hash_s"] = time.perf_counter() - started

    unique = list(hashed.first_path)
    if backbone is not None and other_precisions:
        follow_cached_precision(cache, backbone, unique, other_precisions, index.notes)
    cache_directory = cache.path.parent if cache.path is not None else None
    # Thumbnails go into their table as scans are read and decoded, in the records' order (the duplicate graph's
    # nodes), not held as text by every scan until the end (1.4 GB at 10⁶ images).
    thumbnails = Filling(list(dict.fromkeys(sha for sha in hashed.record_sha if sha is not None)), cache_directory)
    scans = cache.get_scans(unique, each_chunk=thumbnails.take)
    embeddings = load_embeddings(cache, backbone, unique)
    jobs = plan_jobs(hashed.first_path, scans, embeddings, backbone, feature_maps)
    stats.update(unique_images=len(unique), scans_cached=len(scans), embeddings_cached=len(embeddings),
                 embeddings_computed=0, inference_s=0.0)
    if isinstance(embeddings, StoredEmbeddings):
        stats["embeddings_migrated"] = embeddings.store.migrated
    if feature_maps is not None:
        stats.update(feature_maps_cached=len(unique) - sum(j.want_pixels and j.sha not in feature_maps for j in jobs),
                     feature_maps_computed=0)

    started = time.perf_counter()
    wanted = {job.sha for job in jobs if job.want_pixels and job.sha not in embeddings}
    if isinstance(engine, LocalEngine) and backbone is not None and feature_maps is None and wanted:
        _use_lite_copy(backbone, cache_directory, engine, workers, progress, index.notes)
    label = f"embedding ({backbone.name})" if any(job.want_pixels for job in jobs) else "decoding images"
    unstable: set[str] = set()
    with progress.stage(label, len(jobs)) as task:
        for batch in engine.run(jobs, backbone, limits, max_file_bytes, batch_size, want_maps=feature_maps is not None):
            store_batch(batch, cache, backbone, feature_maps, scans, embeddings, wanted, stats)
            thumbnails.take(batch.scans or ())  # after the cache has stored them whole
            unstable.update(batch.unstable)
            task.advance(len(batch.done))
    mark_unstable(hashed, unstable)
    stats["decode_embed_s"] = time.perf_counter() - started
    return Encoded(record_sha=hashed.record_sha, read_problems=hashed.read_problems, scans=scans,
                   embeddings=embeddings, stats=stats, feature_maps=feature_maps, thumbnails=thumbnails.table(),
                   thumbnail_folder=cache_directory)


def _use_lite_copy(backbone: Backbone, cache_directory: Path | None, engine: LocalEngine, threads: int,
                   progress: Progress, notes: list[str]) -> None:
    """Embed with the backbone's LiteRT copy (backbones/lite.py): the cached one, or one converted now from the
    Keras model, once per cache and backbone key. A graph the converter cannot take is a note, and the Keras model
    embeds."""
    if not lite.applies(has_gpu=engine.devices().gpus > 0):
        return
    for _attempt in range(2):
        if lite.wants_copy(backbone, cache_directory):
            with progress.stage("converting the backbone for LiteRT (once per cache)", 1) as task:
                why_not = lite.keep_copy(backbone, cache_directory)
                task.advance(1)
            if why_not:
                notes.append(f"the backbone could not be converted for LiteRT ({why_not}); Keras embedded the images")
                return
        if lite.attach_copy(backbone, cache_directory, threads) or not lite.can_copy(backbone):
            return
        lite.discard_copy(backbone, cache_directory)  # unreadable (cut short, another runtime's format): made again


def follow_cached_precision(cache: Cache, backbone: Backbone, shas: list[str], others: tuple[str, ...],
                            notes: list[str]) -> None:
    """`--precision auto` picks what computes fastest on this machine (engines/device.py), which differs between
    machines (bfloat16 with AMX, float32 without). Embeddings another machine cached in another precision are the
    same function up to rounding, so where one of `others` holds more than half of these contents and more than the
    chosen precision does, the backbone switches to it: a merge gate on a CI runner without AMX then embeds only
    the incoming images, not the whole existing dataset again. Only the count of cached rows is read."""
    import dataclasses

    def count(precision: str) -> int:
        return cache.count_stored_embeddings(dataclasses.replace(backbone, precision=precision).cache_key, shas)

    counts = {backbone.precision: count(backbone.precision)}
    if counts[backbone.precision] == len(shas):  # a re-audit on a machine like the last one: nothing to follow
        return
    counts.update({precision: count(precision) for precision in others})
    best = max(others, key=lambda p: counts[p], default=None)
    if best is None or counts[best] <= max(counts[backbone.precision], len(shas) / 2):
        return
    notes.append(f"Precision: {best}, in which the cache holds {counts[best]} of these {len(shas)} images' embeddings "
                 f"({backbone.precision}, the fastest here, holds {counts[backbone.precision]}).")
    backbone.precision = best


def load_embeddings(cache: Cache, backbone: Backbone | None, shas: list[str]) -> Mapping[str, np.ndarray]:
    """The stored embeddings of these contents (rows of earlier versions' SQLite table are migrated into the
    store on the way); {} without a backbone."""
    if backbone is None:
        return {}
    store = cache.embedding_store(backbone.cache_key)
    store.load(shas)
    return StoredEmbeddings(store)


UNSTABLE = Problem("unstable_content", "error",
                   "content changed (or the file vanished) between two reads: a file being written, or not a plain file; "
                   "not audited")


def mark_unstable(hashed: Hashed, unstable: set[str]) -> None:
    """Files whose content changed between the hashing read and the decoding read are reported, never
    silently dropped (e.g. a link to /dev/urandom, or a file being written)."""
    for position, sha in enumerate(hashed.record_sha):
        if sha in unstable:
            hashed.read_problems[position] = UNSTABLE
            hashed.record_sha[position] = None


def hash_files(records: list[ImageRecord], max_file_bytes: int, workers: int, progress: Progress,
                engine: Any = None) -> Hashed:
    """Read and hash every file (cheap, I/O bound): content hashes are the keys of everything else.
    Local files are hashed here; files named by URL (s3://, gs://) by an engine that reads where their
    bytes are (the Ray engine's `hash_urls`)."""
    hashed = Hashed(record_sha=[None] * len(records), read_problems={}, first_path={})
    # Locations as the records hold them (text), not `abspath`: that makes a Path (≈ 300 bytes) per record and per
    # read, 10⁶ short-lived objects allocated among the long-lived hashes (memray on 2·10⁵ images: 39 MB of heap
    # first taken while these Paths were made was still held late in the duplicate decision).
    remote = [position for position, record in enumerate(records) if is_url(record.location)]
    remote_set = set(remote)
    local = [position for position in range(len(records)) if position not in remote_set]

    def hash_one(position: int) -> tuple[int, str | None, Problem | None]:
        data, problem = read_file(records[position].location, max_file_bytes)
        return position, (sha256_hex(data) if data is not None else None), problem

    def settle(position: int, sha: str | None, problem: Problem | None) -> None:
        hashed.record_sha[position] = sha
        if problem is not None:
            hashed.read_problems[position] = problem
        elif sha not in hashed.first_path:
            hashed.first_path[sha] = records[position].location

    with interruptible_threads(workers) as pool, progress.stage("hashing files", len(records)) as task:
        for position, sha, problem in bounded_map(pool, hash_one, local, lookahead=4 * workers):
            settle(position, sha, problem)
            task.advance()
        if remote and hasattr(engine, "hash_urls"):
            for i, sha, problem in engine.hash_urls([records[p].location for p in remote], max_file_bytes):
                settle(remote[i], sha, problem)
                task.advance()
        elif remote:
            for position in remote:
                settle(position, None, Problem("unreadable", "error", "a URL: files named by URL are read with --engine ray"))
                task.advance()
    return hashed


def plan_jobs(first_path: dict[str, str], scans: dict[str, ImageScan], embeddings: dict[str, np.ndarray],
              backbone: Backbone | None, feature_maps: Any) -> list[DecodeJob]:
    """One job per content the cache cannot fully answer: no scan yet, or (for a usable image) no
    embedding or no feature maps. An image already known to be unusable is never decoded again."""
    jobs = []
    for sha, path in first_path.items():
        maybe_usable = sha not in scans or scans[sha].usable
        want_pixels = backbone is not None and maybe_usable and (
            sha not in embeddings or (feature_maps is not None and sha not in feature_maps))
        if want_pixels or sha not in scans:
            jobs.append(DecodeJob(sha=sha, path=path, want_scan=sha not in scans, want_pixels=want_pixels))
    return jobs


def store_batch(batch: EncodedBatch, cache: Cache, backbone: Backbone | None, feature_maps: Any,
                scans: dict[str, ImageScan], embeddings: Mapping[str, np.ndarray], wanted: set[str],
                stats: dict[str, float]) -> None:
    """Commit one batch to the cache (and the in-memory views): scans, embeddings (one store chunk per
    batch, committed atomically), feature maps."""
    if batch.scans:
        cache.put_scans(batch.scans)
        scans.update((scan.sha256, scan) for scan in batch.scans)
    if batch.vectors is None or not batch.shas:
        return
    if batch.maps is not None and feature_maps is not None:
        feature_maps.put(batch.shas, batch.maps)
        stats["feature_maps_computed"] += len(batch.shas)
    fresh = [i for i, sha in enumerate(batch.shas) if sha in wanted]
    if isinstance(embeddings, StoredEmbeddings):
        embeddings.store.put([batch.shas[i] for i in fresh], batch.vectors[fresh])  # the view sees them at once
    else:
        cache.put_embeddings(backbone.cache_key, [batch.shas[i] for i in fresh], batch.vectors[fresh])
        embeddings.update((batch.shas[i], batch.vectors[i]) for i in fresh)
    stats["embeddings_computed"] += len(fresh)
    stats["inference_s"] += batch.inference_s
