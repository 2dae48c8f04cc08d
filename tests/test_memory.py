import sys

import numpy as np
import pytest

from auditor.memory import release_free_memory


def _anonymous_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; glibc's malloc_trim")
def test_freed_heap_chunks_leave_the_process_once_released():
    """3 000 arrays of 64 KB (heap chunks, each followed by a small live one that pins the heap's top: 2 KB, above
    the sizes numpy serves from its own cache of freed blocks): freed, they stay in the resident memory until
    released."""
    held, pins = [], []
    for _ in range(3000):
        held.append(np.ones(8192))
        pins.append(np.ones(256))
    del held
    before = _anonymous_mb()
    assert release_free_memory()
    assert before - _anonymous_mb() > 100  # of the ≈ 190 MB freed
