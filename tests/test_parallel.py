"""Blocks of array work on several threads: the numbers of one thread, errors surface, every block runs once."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from auditor.similarity import evidence as ev
from auditor import parallel
from auditor.similarity import pixels as px
from auditor.similarity.neighbours import paired_cosines


def test_every_block_runs_once_on_several_threads():
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def work(start: int) -> None:
        time.sleep(0.02)  # long enough for the other threads to take blocks too
        with lock:
            seen.append((start, threading.get_ident()))

    parallel.run_blocks(work, range(0, 100, 10), threads=3)
    assert sorted(s for s, _ in seen) == list(range(0, 100, 10))
    assert len({t for _, t in seen}) > 1


def test_a_blocks_error_reaches_the_caller():
    def work(start: int) -> None:
        if start == 20:
            raise ValueError("block 20")

    with pytest.raises(ValueError, match="block 20"):
        parallel.run_blocks(work, range(0, 50, 10), threads=2)


def test_block_size_gives_every_thread_a_block_within_the_memory_bound():
    assert parallel.block_size(1000, 300, threads=2) == 300
    assert parallel.block_size(100, 300, threads=2) == 50
    assert parallel.block_size(1, 300, threads=4) == 1


@pytest.mark.parametrize("threads", [2, 3])
def test_hashes_descriptors_and_cosines_on_threads_equal_one_thread(monkeypatch, threads):
    rng = np.random.default_rng(3)
    thumbs = rng.integers(0, 256, (1001, 32, 32)).astype(np.uint8)
    unit = rng.standard_normal((300, 64)).astype(np.float16)
    rows = rng.integers(0, 300, (2, 5000))
    monkeypatch.setattr(ev, "CODE_CHUNK", 128)  # many chunks

    def everything():
        codes = ev.dihedral_codes(thumbs)
        descriptors = ev._chunked(px.block_descriptors, px.dihedral(thumbs, 3), 64, np.float32)
        return codes[0], codes[1], descriptors, paired_cosines(unit, rows[0], unit, rows[1], block=512)

    monkeypatch.setattr(parallel, "THREADS", 1)
    one = everything()
    monkeypatch.setattr(parallel, "THREADS", threads)
    several = everything()
    for a, b in zip(one, several):
        assert np.array_equal(a, b)
    whole = px.block_descriptors(np.ascontiguousarray(px.dihedral(thumbs, 3)))
    assert np.array_equal(several[2], whole)  # chunks change nothing
