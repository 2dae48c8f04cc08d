import sys

import numpy as np
import pytest

from auditor.memory import release_free_memory


def _anonymous_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; glibc's malloc_trim")
def test_freed_heap_chunks_leave_the_process_once_released():
    """6 000 arrays of 64 KB (heap chunks, below glibc's mmap threshold), every other one freed: each freed chunk lies
    between two live ones, so none joins the top of the heap that glibc trims by itself, and they stay in the
    resident memory until released. (Pins of 2 KB after each array were used first: in a worker whose heap has
    small holes from earlier tests they went into those holes, the arrays' chunks joined the top, glibc returned
    them at `del` and the test failed once under xdist.)"""
    arrays = [np.ones(8192) for _ in range(6000)]
    del arrays[::2]
    before = _anonymous_mb()
    assert release_free_memory()
    assert before - _anonymous_mb() > 100  # of the ≈ 190 MB freed
    assert len(arrays) == 3000  # the live half, kept to the end


FRAGMENTED = """
import sys
import numpy as np
from auditor.memory import map_large_blocks
if sys.argv[1] == "mapped":
    assert map_large_blocks()
def anonymous_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:"))
freed = np.ones(16 << 20, np.uint8)
del freed  # a mapped block freed: glibc raises its threshold to 16 MB, so blocks below it come from the heap
block = np.ones(8 << 20, np.uint8)
pin = np.ones(200_000, np.uint8)  # a live heap chunk above it: the block's space cannot join the heap's top
before = anonymous_kb()
del block
print(before - anonymous_kb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; glibc's mallopt")
@pytest.mark.parametrize("mode, given_back", [("heap", False), ("mapped", True)])
def test_a_large_block_freed_leaves_the_process_only_where_large_blocks_are_mapped(mode, given_back):
    """In a fresh process (the setting is the process's): glibc's own threshold keeps a freed 8 MB block resident
    under a live chunk; with `map_large_blocks` the block was a mapping of its own and is gone at `del`."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", FRAGMENTED, mode], capture_output=True, text=True, check=True)
    returned_kb = int(out.stdout.split()[-1])
    assert (returned_kb > 7 * 1024) == given_back, returned_kb


def _advice_flags(path) -> set[str]:
    """The VmFlags of this process's mapping of `path` (/proc/self/smaps): `rr` is MADV_RANDOM."""
    with open("/proc/self/smaps") as smaps:
        lines = smaps.read().splitlines()
    at = next(i for i, line in enumerate(lines) if line.endswith(str(path)))
    flags = next(line for line in lines[at + 1:] if line.startswith("VmFlags:"))
    return set(flags.split()[1:])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_random_access_turns_off_read_around_for_the_arrays_memory_map_and_restores_it(tmp_path):
    from auditor.memory import memory_maps_of, random_access

    path = tmp_path / "rows.npy"
    np.save(path, np.arange(4096 * 64, dtype=np.float16).reshape(4096, 64))
    rows = np.load(path, mmap_mode="r")[100:200]  # a slice, as the checks read the store
    assert len(memory_maps_of(rows)) == 1 and memory_maps_of(np.zeros(4)) == []
    assert "rr" not in _advice_flags(path)
    with random_access(rows) as same:
        assert same is rows and "rr" in _advice_flags(path)
    assert "rr" not in _advice_flags(path)
    with random_access(np.zeros(4)):  # not memory-mapped: nothing to advise
        pass
