"""bench/bench_hamming.py: every method it times answers the same search, and it says so (or stops)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))


def _dihedral_like(rng, n: int) -> np.ndarray:
    base = rng.integers(0, 256, (50, 8), dtype=np.uint8)
    bits = np.unpackbits(base[rng.integers(0, 50, 8 * n)], axis=1)
    return np.packbits(bits ^ (rng.random(bits.shape) < 0.03), axis=1).reshape(8, n, 8)


def test_each_method_returns_the_flat_searchs_rows_and_the_limits_are_restored(capsys):
    import bench_hamming

    from auditor.similarity import multi_index, neighbours

    before = (neighbours.HAMMING_EXACT_LIMIT, neighbours.HAMMING_APPROXIMATE_FROM, multi_index.MAX_TABLE_BITS)
    bench_hamming.run_size(_dihedral_like(np.random.default_rng(0), 2_500), 2_500)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 2500 |")]
    assert [line.split(" | ")[1] for line in lines] == ["flat (reference)", "FAISS multi-index", "direct multi-index"]
    assert len({line.split(" | ")[-1] for line in lines}) == 1  # the same number of rows
    assert (neighbours.HAMMING_EXACT_LIMIT, neighbours.HAMMING_APPROXIMATE_FROM, multi_index.MAX_TABLE_BITS) == before


def test_a_method_that_answers_differently_stops_the_bench(monkeypatch):
    import bench_hamming

    from auditor.similarity import multi_index

    real_search = multi_index.DirectMultiIndex._nearest

    def drops_one(self, *args):
        return real_search(self, *args)[1:]

    monkeypatch.setattr(multi_index.DirectMultiIndex, "_nearest", drops_one)
    with pytest.raises(SystemExit, match="different rows"):
        bench_hamming.run_size(_dihedral_like(np.random.default_rng(1), 2_500), 2_500)
