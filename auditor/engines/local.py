"""The local engine: decoding in a thread pool ahead of inference (Pillow and the hashes release the GIL),
the backbone on the calling thread, full batches. Bounded memory: at most two batches of decoded
images in flight."""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np

from auditor.encoding.imaging import ImageScan, ScanLimits, scan_bytes, sha256_hex
from auditor.encoding.reading import read_file
from auditor.engines import DecodeJob, EncodedBatch

T = TypeVar("T")
R = TypeVar("R")
SCANS_PER_BATCH = 256  # scans of images that need no embedding are handed back this many at a time


def bounded_map(executor: Executor, fn: Callable[[T], R], items: Iterable[T], lookahead: int) -> Iterator[R]:
    """Like executor.map, in order, but never more than `lookahead` results in flight (bounded memory)."""
    pending: deque = deque()
    for item in items:
        pending.append(executor.submit(fn, item))
        if len(pending) >= lookahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


@contextmanager
def interruptible_threads(workers: int, name: str = "auditor-read"):
    """A thread pool that, when the caller stops early (Ctrl-C, an error), drops the queued work and does
    not wait for it: reads never block, so the threads still running finish within moments."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def decode_job(job: DecodeJob, limits: ScanLimits, max_file_bytes: int,
               embed_size: int | None) -> tuple[DecodeJob, ImageScan | None, np.ndarray | None]:
    """Read and decode one content: its scan and, when wanted, its pixels at the backbone's size.
    (None, None) when the file changed or vanished since it was hashed: the caller reports it."""
    scan, array, _why = decode_or_why(job, limits, max_file_bytes, embed_size)
    return job, scan, array


def decode_or_why(job: DecodeJob, limits: ScanLimits, max_file_bytes: int, embed_size: int | None,
                  read: Callable | None = None) -> tuple[ImageScan | None, np.ndarray | None, str | None]:
    """(scan, pixels or None, None), or (None, None, why): "changed" when the bytes no longer hash to the
    job's sha, else the reason they could not be read (another engine's workers may not see a path).
    `read` defaults to this module's read_file, looked up at call time."""
    data, problem = (read or read_file)(job.path, max_file_bytes)
    if data is None:
        return None, None, problem.message if problem is not None else "unreadable"
    if sha256_hex(data) != job.sha:
        return None, None, "changed"
    scan, array = scan_bytes(data, limits, embed_size if job.want_pixels else None)
    return scan, array, None


class LocalEngine:
    def __init__(self, workers: int = 2):
        self.workers = workers

    def devices(self):
        """This machine's GPUs, when the Keras backend here can use them (the backbone runs in this process)."""
        from auditor.engines.device import CPU_ONLY, backend_can_use_gpus, local_devices

        devices = local_devices()
        return devices if devices.gpus and backend_can_use_gpus() else CPU_ONLY

    def run(self, jobs: list[DecodeJob], backbone, limits: ScanLimits, max_file_bytes: int, batch_size: int,
            want_maps: bool) -> Iterator[EncodedBatch]:
        embed_size = backbone.input_size if backbone is not None else None
        batch = EncodedBatch()
        arrays: list[np.ndarray] = []
        with interruptible_threads(self.workers) as pool:
            decoded = bounded_map(pool, lambda job: decode_job(job, limits, max_file_bytes, embed_size), jobs,
                                  lookahead=2 * batch_size)
            for job, scan, array in decoded:
                batch.done.append(job.sha)
                if scan is None:
                    batch.unstable.append(job.sha)
                elif job.want_scan:
                    batch.scans.append(scan)
                if array is not None:
                    batch.shas.append(job.sha)
                    arrays.append(array)
                if len(arrays) >= batch_size or len(batch.scans) >= SCANS_PER_BATCH:
                    yield _embedded(batch, arrays, backbone, want_maps)
                    batch, arrays = EncodedBatch(), []
        if batch.done:
            yield _embedded(batch, arrays, backbone, want_maps)


def _embedded(batch: EncodedBatch, arrays: list[np.ndarray], backbone, want_maps: bool) -> EncodedBatch:
    if arrays:
        started = time.perf_counter()
        if want_maps:
            batch.vectors, batch.maps = backbone.embed_with_maps(np.stack(arrays))
        else:
            batch.vectors = backbone.embed(np.stack(arrays))
        batch.inference_s = time.perf_counter() - started
    return batch
