"""The local engine: decoding in a pool of workers ahead of inference, the backbone on the calling thread, full
batches. Bounded memory: at most two batches of decoded images in flight.

The workers are threads while the backbone runs on the CPUs: Pillow's decode and resizes release the GIL,
and the cores are busy with inference anyway. When a GPU embeds, the cores are free for decoding, and threads
are held back by the share of each scan that holds the GIL (the hashes', properties' and numpy's Python work,
≈ 40 % of a photo's scan here, by its profile): on a 16-core H200 machine with 16 threads the embedding stage
ran at 189 images/s for a GPU that embedded 16 000. There the workers are processes, each decoding a chunk of jobs per task."""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections import deque
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np

from auditor.encoding.imaging import ImageScan, ScanLimits, scan_bytes, sha256_hex
from auditor.encoding.reading import read_file
from auditor.engines import DecodeJob, EncodedBatch

T = TypeVar("T")
R = TypeVar("R")
SCANS_PER_BATCH = 256  # scans of images that need no embedding are handed back this many at a time
JOBS_PER_TASK = 8  # a decoding process's task: fewer round trips, each still small (8 × 150 KB of pixels)
DECODE_IN = ("auto", "threads", "processes")


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
    with _dropped_on_error(pool):
        yield pool


@contextmanager
def interruptible_processes(workers: int):
    """A pool of fresh interpreters (spawned, not forked: the backbone's runtime already runs threads in this
    process), dropped like `interruptible_threads` when the caller stops early."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_leave_interrupts_to_the_parent)
    with _dropped_on_error(pool):
        yield pool


def _leave_interrupts_to_the_parent() -> None:
    """Ctrl-C reaches every process of the terminal's group: the parent stops the audit in one line; a decoding
    process would print a traceback of its own. It finishes its chunk and exits when the pool is dropped."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def _dropped_on_error(pool: Executor):
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


def decode_jobs(jobs: list[DecodeJob], limits: ScanLimits, max_file_bytes: int,
                embed_size: int | None) -> list[tuple[DecodeJob, ImageScan | None, np.ndarray | None]]:
    """`decode_job` for a chunk of jobs: one task of a decoding process."""
    return [decode_job(job, limits, max_file_bytes, embed_size) for job in jobs]


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
    return (*scan_bytes(data, limits, embed_size if job.want_pixels else None, sha256=job.sha), None)


def main_module_is_safe_to_spawn() -> bool:
    """Whether a spawned process may import this program's main module: it does so before its first task, and a
    script without an `if __name__ == "__main__":` guard would run again there (its audit too). Safe: auditor's
    own commands (the console scripts and `python -m auditor` are guarded), and sessions with no main file (a
    notebook, the REPL, `python -c`). A script of yours decodes in threads unless it builds
    `LocalEngine(decode_in="processes")` itself."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None:
        return True
    spec = getattr(main, "__spec__", None)
    return getattr(spec, "name", None) == "auditor.__main__" or Path(path).name in ("audit", "auditor")


class LocalEngine:
    def __init__(self, workers: int = 2, decode_in: str = "auto"):
        """`decode_in`: "threads", "processes", or "auto": processes when a GPU embeds (and there are more
        than two workers, each process costing a second to start), threads otherwise."""
        if decode_in not in DECODE_IN:
            raise ValueError(f"decode_in must be one of {DECODE_IN}, not {decode_in!r}")
        self.workers = workers
        self.decode_in = decode_in

    def devices(self):
        """This machine's GPUs, when the Keras backend here can use them (the backbone runs in this process)."""
        return self._devices

    @cached_property
    def _devices(self):
        from auditor.engines.device import CPU_ONLY, backend_can_use_gpus, local_devices

        devices = local_devices()
        return devices if devices.gpus and backend_can_use_gpus() else CPU_ONLY

    def decodes_in_processes(self, embeds: bool) -> bool:
        if self.decode_in != "auto":
            return self.decode_in == "processes"
        return embeds and self.workers > 2 and self.devices().gpus > 0 and main_module_is_safe_to_spawn()

    def run(self, jobs: list[DecodeJob], backbone, limits: ScanLimits, max_file_bytes: int, batch_size: int,
            want_maps: bool) -> Iterator[EncodedBatch]:
        embed_size = backbone.input_size if backbone is not None else None
        batch = EncodedBatch()
        arrays: list[np.ndarray] = []
        for job, scan, array in self._decoded(jobs, limits, max_file_bytes, embed_size, batch_size):
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

    def pool(self, embeds: bool) -> "WorkerPool":
        """Where this engine's per-image work runs (decoding, and the calibration copies made after it)."""
        return WorkerPool(self.workers, self.decodes_in_processes(embeds))

    def _decoded(self, jobs: list[DecodeJob], limits: ScanLimits, max_file_bytes: int, embed_size: int | None,
                 batch_size: int) -> Iterator[tuple[DecodeJob, ImageScan | None, np.ndarray | None]]:
        """Every job's (job, scan, pixels), in order, never more than about two batches ahead of the caller."""
        pool = self.pool(embeds=embed_size is not None and any(j.want_pixels for j in jobs))
        if not pool.processes:
            task = partial(decode_job, limits=limits, max_file_bytes=max_file_bytes, embed_size=embed_size)
            yield from pool.map(task, jobs, lookahead=2 * batch_size)
            return
        chunks = [jobs[i : i + JOBS_PER_TASK] for i in range(0, len(jobs), JOBS_PER_TASK)]
        task = partial(decode_jobs, limits=limits, max_file_bytes=max_file_bytes, embed_size=embed_size)
        lookahead = max(2 * self.workers, -(-2 * batch_size // JOBS_PER_TASK))
        for decoded in pool.map(task, chunks, lookahead=lookahead):
            yield from decoded


@dataclass(frozen=True)
class WorkerPool:
    """Where independent per-image work runs on this machine: `workers` threads, or as many spawned processes
    (then `fn` must be a module-level function and its items and results picklable). One worker: this thread."""

    workers: int = 1
    processes: bool = False

    def map(self, fn: Callable[[T], R], items: Iterable[T], lookahead: int) -> Iterator[R]:
        """fn(item) for every item, in order, never more than `lookahead` results in flight. Stopping early (an
        error, Ctrl-C, the caller closing the iterator) drops the queued work."""
        if self.workers <= 1 and not self.processes:
            yield from map(fn, items)
            return
        opened = interruptible_processes(self.workers) if self.processes else interruptible_threads(self.workers)
        with opened as pool:
            yield from bounded_map(pool, fn, items, lookahead)


def _embedded(batch: EncodedBatch, arrays: list[np.ndarray], backbone, want_maps: bool) -> EncodedBatch:
    if arrays:
        started = time.perf_counter()
        if want_maps:
            batch.vectors, batch.maps = backbone.embed_with_maps(np.stack(arrays))
        else:
            batch.vectors = backbone.embed(np.stack(arrays))
        batch.inference_s = time.perf_counter() - started
    return batch
