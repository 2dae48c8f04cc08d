"""Independent blocks of array work on every core (shared by the similarity search and the statistics).

numpy (and FAISS) release the GIL inside their loops, so plain threads keep every core busy on blocks of rows
with no copies and no pickling; each block writes its own rows, so the result is the one of a single thread.
The blocks run on one BLAS thread each: their matrix products are small, and BLAS threads on top of ours only
fight for the cores."""

from __future__ import annotations

import os
from typing import Callable, Iterable

THREADS = 0  # threads for blocks of array work; 0: one per available core


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def thread_count() -> int:
    """Threads for blocks of work: THREADS, else one per available core."""
    return THREADS or cores()


def one_blas_thread():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def run_blocks(work: Callable[[int], None], starts: Iterable[int], threads: int = 0) -> None:
    """work(start) for every start, on `threads` threads (0: THREADS, else one per core)."""
    starts = list(starts)
    workers = min(threads or thread_count(), len(starts))
    with one_blas_thread():
        if workers <= 1:
            for start in starts:
                work(start)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, starts))  # list(): re-raise a block's exception here


def block_size(rows: int, most: int, threads: int = 0) -> int:
    """Rows per block: at most `most` (memory), and small enough that every thread gets one."""
    workers = threads or thread_count()
    return max(1, min(most, -(-rows // workers)))
