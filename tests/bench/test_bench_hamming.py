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


def test_from_the_approximate_size_it_times_the_complete_search_against_the_decisions_and_says_how_much_it_finds(
        capsys, monkeypatch):
    import bench_hamming

    from auditor.similarity import neighbours

    monkeypatch.setattr(neighbours, "HAMMING_APPROXIMATE_FROM", 1_000)
    monkeypatch.setattr(neighbours, "HAMMING_QUALITY_SAMPLE", 2_000)
    monkeypatch.setattr(neighbours, "TARGET_RECALL", 0.5)  # the tables for one bit less search every probe
    bench_hamming.run_size(_dihedral_like(np.random.default_rng(2), 2_500), 2_500)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    rows = {line.split(" | ")[1]: int(line.split(" | ")[-1].rstrip(" |")) for line in lines if "2500" in line}
    complete, approximate = rows["direct multi-index, complete (reference)"], rows["approximate (the decision's from 200 000)"]
    assert 0 < approximate <= complete
    share = next(float(line.split(" | ")[2]) for line in lines if "its share of the complete" in line)
    assert 0.5 < share <= 1.0 and any("approximate: multi-index hashing" in line for line in lines)
