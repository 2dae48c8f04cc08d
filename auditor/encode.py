"""The encode phase: hash every file, decode what the cache lacks, embed in batches.

Every file is read once to hash it; only contents the cache lacks are read a second time (usually
from the OS page cache) to be decoded, so bytes are never held for the whole dataset at once.

Work is keyed by file content (sha256), so identical files are decoded and embedded once, and a
re-run over an unchanged dataset decodes and embeds nothing. Decoding runs in a thread pool ahead
of inference (Pillow and the hashes release the GIL), so both cores stay busy while the backbone runs.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np

from auditor.backbones.registry import Backbone
from auditor.cache import Cache
from auditor.dataset import DatasetIndex
from auditor.imaging import ImageScan, Problem, ScanLimits, scan_bytes, sha256_hex
from auditor.progress import Progress, SilentProgress

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Encoded:
    """Everything the checks read about the images, aligned with `index.records`."""

    record_sha: list[str | None]  # None: the file could not be read at all
    read_problems: dict[int, Problem]  # record position → why it could not be read
    scans: dict[str, ImageScan]
    embeddings: dict[str, np.ndarray]  # sha256 → raw float32 vector (only usable images)
    stats: dict[str, float] = field(default_factory=dict)
    feature_maps: Any = None  # a FeatureMapStore when the fine-tune asked for the base's maps, else None


def bounded_map(executor: Executor, fn: Callable[[T], R], items: Iterable[T], lookahead: int) -> Iterator[R]:
    """Like executor.map, in order, but never more than `lookahead` results in flight (bounded memory)."""
    pending: deque = deque()
    for item in items:
        pending.append(executor.submit(fn, item))
        if len(pending) >= lookahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


# O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOCTTY: a terminal device must not become ours.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
_FILE_TYPES = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def read_file(path: Path, max_bytes: int) -> tuple[bytes | None, Problem | None]:
    """The file's bytes, or the reason it cannot be had. Never raises, never blocks.

    Only regular files are read. The type is taken from the opened descriptor (fstat), not from the
    name, so a file swapped for a FIFO or a device between listing and reading is still refused; the
    open itself cannot block (O_NONBLOCK), and a device is never read (/dev/urandom has no end)."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None, Problem("missing_file", "error", "file does not exist")
    except PermissionError:
        return None, Problem("unreadable", "error", "permission denied")
    except OSError as exc:  # ENXIO: a socket, or a FIFO/device that refuses non-blocking opens
        if exc.errno == errno.ENXIO:
            return None, Problem("not_regular_file", "error", "not a regular file (a socket or device); not read")
        return None, Problem("unreadable", "error", f"cannot open: {exc.strerror or exc}")
    except ValueError:  # a NUL in the name (a manifest cell)
        return None, Problem("unreadable", "error", "the name contains a NUL character")
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):  # the kind it always had (finding ids, and so baselines, keep it)
            return None, Problem("unreadable", "error", "is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            what = next((name for test, name in _FILE_TYPES if test(info.st_mode)), "not a regular file")
            return None, Problem("not_regular_file", "error", f"is {what}, not a regular file; not read")
        if info.st_size > max_bytes:
            return None, Problem("too_large_file", "error",
                                 f"{info.st_size / 2**20:.0f} MiB exceeds the {max_bytes / 2**20:.0f} MiB limit; not read")
        chunks, remaining = [], max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:  # grew while being read
            return None, Problem("too_large_file", "error", f"exceeds the {max_bytes / 2**20:.0f} MiB limit; not read")
        return data, None
    except OSError as exc:
        return None, Problem("unreadable", "error", f"cannot read: {exc.strerror or exc}")
    finally:
        os.close(fd)


UNSTABLE = Problem("unstable_content", "error",
                   "content changed (or the file vanished) between two reads: a file being written, or not a plain file; not audited")


@contextmanager
def _threads(workers: int):
    """A thread pool that, when the caller stops early (Ctrl-C, an error), drops the queued work and does
    not wait for it: reads never block, so the threads still running finish within moments."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="auditor-read")
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


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
) -> Encoded:
    """Hash, scan and (if a backbone is given) embed every record, using and filling the cache.

    With a `FeatureMapStore` as `feature_maps`, the backbone's spatial maps are computed in the same
    pass as the embeddings (one forward pass gives both) for every image the store lacks."""
    progress = progress or SilentProgress()
    records = index.records
    if backbone is not None:
        backbone.batch_shape = batch_size
    stats: dict[str, float] = {}

    # 1. Read and hash every file (cheap, I/O bound): content hashes are the keys of everything else.
    started = time.perf_counter()
    record_sha: list[str | None] = [None] * len(records)
    read_problems: dict[int, Problem] = {}
    first_path: dict[str, Path] = {}

    def hash_one(position: int) -> tuple[int, str | None, Problem | None]:
        data, problem = read_file(records[position].abspath, max_file_bytes)
        return position, (sha256_hex(data) if data is not None else None), problem

    with _threads(workers) as pool, progress.stage("hashing files", len(records)) as task:
        for position, sha, problem in bounded_map(pool, hash_one, range(len(records)), lookahead=4 * workers):
            record_sha[position] = sha
            if problem is not None:
                read_problems[position] = problem
            elif sha not in first_path:
                first_path[sha] = records[position].abspath
            task.advance()
    stats["hash_s"] = time.perf_counter() - started

    # 2. Ask the cache what it already knows.
    unique = list(first_path)
    scans = cache.get_scans(unique)
    embeddings = cache.get_embeddings(backbone.cache_key, unique) if backbone is not None else {}
    need_scan = [sha for sha in unique if sha not in scans]
    need_embedding = {
        sha for sha in unique if backbone is not None and sha not in embeddings and (sha not in scans or scans[sha].usable)
    }
    need_maps = {
        sha for sha in unique
        if feature_maps is not None and backbone is not None and sha not in feature_maps
        and (sha not in scans or scans[sha].usable)
    }
    need_pixels = need_embedding | need_maps
    todo = [sha for sha in unique if sha in need_pixels or sha not in scans]
    stats.update(unique_images=len(unique), scans_cached=len(unique) - len(need_scan),
                 embeddings_cached=len(embeddings), embeddings_computed=0)
    if feature_maps is not None:
        stats.update(feature_maps_cached=len(unique) - len(need_maps), feature_maps_computed=0)

    # 3. Decode what is missing, in threads, while the main thread runs the backbone on full batches.
    started = time.perf_counter()
    embed_size = backbone.input_size if backbone is not None else None
    inference_s = 0.0

    unstable: set[str] = set()

    def decode_one(sha: str) -> tuple[str, ImageScan | None, np.ndarray | None]:
        data, problem = read_file(first_path[sha], max_file_bytes)
        if data is None or sha256_hex(data) != sha:
            unstable.add(sha)  # changed (or vanished) since it was hashed: reported, never silently dropped
            return sha, None, None
        scan, array = scan_bytes(data, limits, embed_size if sha in need_pixels else None)
        return sha, scan, array

    batch_shas: list[str] = []
    batch_arrays: list[np.ndarray] = []
    new_scans: list[ImageScan] = []

    def flush() -> None:
        nonlocal inference_s
        if new_scans:
            cache.put_scans(new_scans)
            new_scans.clear()
        if batch_arrays:
            tick = time.perf_counter()
            if feature_maps is not None:
                vectors, maps = backbone.embed_with_maps(np.stack(batch_arrays))
                feature_maps.put(batch_shas, maps)
                stats["feature_maps_computed"] += len(batch_shas)
            else:
                vectors = backbone.embed(np.stack(batch_arrays))
            inference_s += time.perf_counter() - tick
            fresh = [i for i, sha in enumerate(batch_shas) if sha in need_embedding]
            cache.put_embeddings(backbone.cache_key, [batch_shas[i] for i in fresh], vectors[fresh])
            embeddings.update((batch_shas[i], vectors[i]) for i in fresh)
            stats["embeddings_computed"] += len(fresh)
            batch_shas.clear()
            batch_arrays.clear()

    label = f"embedding ({backbone.name})" if need_pixels else "decoding images"
    with _threads(workers) as pool, progress.stage(label, len(todo)) as task:
        for sha, scan, array in bounded_map(pool, decode_one, todo, lookahead=2 * batch_size):
            if scan is not None:
                if sha not in scans:
                    new_scans.append(scan)
                scans[sha] = scan
            if array is not None:
                batch_shas.append(sha)
                batch_arrays.append(array)
            if len(batch_arrays) >= batch_size or len(new_scans) >= 256:
                flush()  # commit often: a killed run keeps everything finished so far
            task.advance()
        flush()
    for position, sha in enumerate(record_sha):
        if sha in unstable:
            read_problems[position] = UNSTABLE
            record_sha[position] = None
    stats["decode_embed_s"] = time.perf_counter() - started
    stats["inference_s"] = inference_s
    return Encoded(record_sha=record_sha, read_problems=read_problems, scans=scans, embeddings=embeddings, stats=stats,
                   feature_maps=feature_maps)
