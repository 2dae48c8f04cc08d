"""Giving freed memory back to the system after the audit's largest steps.

glibc keeps memory freed inside its heaps (every allocation below its mmap threshold: numpy arrays up to a few
MB, Python objects) in the process, counted in its resident memory though nothing uses it, until the top of the
heap is free. The duplicate decision at 10⁶ images frees gigabytes of such chunks (hash-match chunks, per-chunk
pair arrays, memo keys) between long-lived objects, so the checks after it started from ≈ 0.3 GB more than they
hold. `malloc_trim` hands the free pages back (madvise), wherever they lie in the heap.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; absent from macOS' and musl's C libraries
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system (glibc's malloc_trim); False where there is no such call."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
