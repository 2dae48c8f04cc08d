"""Giving freed memory back to the system: after the audit's largest steps, and for large blocks as they are freed.

glibc keeps memory freed inside its heaps (every allocation below its mmap threshold: numpy arrays up to a few
MB, Python objects) in the process, counted in its resident memory though nothing uses it, until the top of the
heap is free. The duplicate decision at 10⁶ images frees gigabytes of such chunks (hash-match chunks, per-chunk
pair arrays, memo keys) between long-lived objects, so the checks after it started from ≈ 0.3 GB more than they
hold. `malloc_trim` hands the free pages back (madvise), wherever they lie in the heap.

And reading memory-mapped files at random without the kernel's read-around (`random_access`): inside a memory limit
that counts the page cache (a container's), the pages read around each row push out the rows still needed.
"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager
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


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
LARGE_BLOCK_BYTES = 4 << 20
# From this many images an audit maps large blocks on their own (`map_large_blocks`), the smallest size it was
# measured at; below, memory is no limit and the CPU is not spent.
MAP_LARGE_BLOCKS_FROM = 200_000


def map_large_blocks(threshold: int = LARGE_BLOCK_BYTES) -> bool:
    """Serve every allocation of `threshold` bytes or more from a memory map of its own, unmapped when it is freed;
    False where the C library has no such setting (not glibc). glibc starts its threshold at 128 KB and raises it
    to the size of each mapped block freed, up to 32 MB, so in a long audit the arrays of a few MB that every step
    makes and drops (search blocks, pair chunks, probe features) come from the heap, and their space stays there,
    resident, between long-lived objects. A fixed threshold stops that. Whole audits of 32 px crops, every check
    (docs/scale.md, "Scale on one machine"): 2·10⁵ peaked at 1.04 GiB of anonymous memory instead of 1.29 (≈ 11 % more
    CPU, run two at a time); 10⁶ at 3.72 GiB instead of 3.81 (the decision's stage 2.9–3.0 instead of 3.3; 8 % more
    CPU, system time 143 → 254 s: faulting fresh pages)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, int(threshold)))


def memory_maps_of(array) -> list:
    """The `mmap.mmap` objects an array's memory lies in (a `np.memmap`, a slice or view of one): none for memory
    of its own."""
    import mmap

    found, seen, obj = [], set(), array
    while obj is not None and id(obj) not in seen:
        seen.add(id(obj))
        mapped = obj if isinstance(obj, mmap.mmap) else getattr(obj, "_mmap", None)
        if isinstance(mapped, mmap.mmap) and not any(mapped is m for m in found):
            found.append(mapped)
        obj = getattr(obj, "base", None)
    return found


@contextmanager
def random_access(array):
    """While inside, the kernel reads only the pages of `array`'s memory map that are touched (MADV_RANDOM), then
    the usual read-ahead again (MADV_NORMAL). Why: a page fault on a file mapping reads the 128 KB around the page,
    so rows read at random (the k-NN graph's re-ranking reads a 2.5 KB row of the embedding store per candidate)
    pull in 50 times what they use. With memory to spare those pages stay cached and cost nothing; inside a memory
    limit they push out the rows still needed: the whole audit of 10⁶ images in a 4 GiB cgroup (page cache
    included) read 1.3 TB from disk in 22 minutes of the graph's search, which takes a few minutes unconstrained.
    A no-op for arrays not memory-mapped, or where the platform has no madvise."""
    import mmap

    maps = memory_maps_of(array) if hasattr(mmap, "MADV_RANDOM") else []
    for mapped in maps:
        _advise(mapped, mmap.MADV_RANDOM)
    try:
        yield array
    finally:
        for mapped in maps:
            _advise(mapped, mmap.MADV_NORMAL)


def _advise(mapped, advice: int) -> None:
    try:
        mapped.madvise(advice)
    except (OSError, ValueError):  # a closed map, or advice the kernel refuses: reading works either way
        pass
