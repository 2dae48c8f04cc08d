import faiss
import numpy as np
import pytest

from auditor.similarity import multi_index, neighbours
from auditor.similarity.multi_index import DirectMultiIndex


def _clustered_codes(rng, n: int, centres: int = 30, flip: float = 0.02) -> np.ndarray:
    """Codes in clumps (copies hash alike), so buckets are uneven and many probes have matches."""
    base = rng.integers(0, 256, (centres, 8), dtype=np.uint8)
    bits = np.unpackbits(base[rng.integers(0, centres, n)], axis=1)
    return np.packbits(bits ^ (rng.random(bits.shape) < flip), axis=1)


def _near(rng, codes: np.ndarray, n: int, flip: float = 0.03) -> np.ndarray:
    """n codes a few bits from some of `codes`."""
    bits = np.unpackbits(codes[rng.integers(0, len(codes), n)], axis=1)
    return np.packbits(bits ^ (rng.random(bits.shape) < flip), axis=1)


def _flat_rows(codes, probes, radius):
    flat = faiss.IndexBinaryFlat(64)
    flat.add(codes)
    return _rows(*flat.range_search(probes, radius))


def _rows(lims, distances, labels):
    probe = np.repeat(np.arange(len(lims) - 1), np.diff(lims).astype(np.int64))
    rows = np.stack([probe, labels.astype(np.int64), distances.astype(np.int64)], axis=1)
    return rows[np.lexsort((rows[:, 1], rows[:, 0]))]


@pytest.mark.parametrize("plan", [(1, 16, 2), (3, 21, 2), (4, 16, 1), (7, 9, 0)])
def test_range_search_finds_exactly_the_flat_searchs_codes_within_the_radius(plan):
    rng = np.random.default_rng(1)
    codes = _clustered_codes(rng, 3_000)
    probes = np.concatenate([_near(rng, codes, 400), rng.integers(0, 256, (100, 8), dtype=np.uint8)])
    index = DirectMultiIndex(codes, *plan)
    radius = plan[0] * (plan[2] + 1) - 1  # the largest this plan is complete for (pigeonhole)
    for r in sorted({0, 2, radius}):
        lims, distances, labels = index.range_search(probes, r + 1)
        assert np.all(np.diff(lims) >= 0) and lims[-1] == len(labels) == len(distances)
        expected = _flat_rows(codes, probes, r + 1)
        assert len(expected) > len(probes) // 4 or r < radius  # matches are many: the test can tell
        got = _rows(lims, distances, labels)
        np.testing.assert_array_equal(got, expected)
        # each probe's codes come in ascending order, as `_range` and the FAISS result handler expect nothing else
        for q in range(0, len(probes), 37):
            assert np.all(np.diff(labels[lims[q]:lims[q + 1]]) > 0)


def test_small_blocks_and_candidate_budgets_give_the_same_rows(monkeypatch):
    """A probe in a clump has thousands of candidates: blocks are cut by candidates, not probes, and whatever
    the cut the rows are the same (one probe alone over budget still runs)."""
    rng = np.random.default_rng(2)
    codes = np.concatenate([np.repeat(rng.integers(0, 256, (1, 8), dtype=np.uint8), 500, axis=0),
                            _clustered_codes(rng, 2_000)])
    probes = np.concatenate([codes[:3], _near(rng, codes, 300)])
    whole = _rows(*DirectMultiIndex(codes, 4, 16, 1).range_search(probes, 7))
    assert np.count_nonzero(whole[:, 0] == 0) >= 500
    monkeypatch.setattr(multi_index, "PROBES_PER_BLOCK", 7)
    monkeypatch.setattr(multi_index, "CANDIDATES_PER_BLOCK", 50)
    np.testing.assert_array_equal(_rows(*DirectMultiIndex(codes, 4, 16, 1).range_search(probes, 7)), whole)
    np.testing.assert_array_equal(whole, _flat_rows(codes, probes, 7))


def test_no_probe_or_no_match_gives_empty_results():
    codes = np.zeros((10, 8), dtype=np.uint8)
    index = DirectMultiIndex(codes, 4, 16, 1)
    lims, distances, labels = index.range_search(np.zeros((0, 8), dtype=np.uint8), 7)
    assert list(lims) == [0] and not len(labels) and not len(distances)
    lims, _d, labels = index.range_search(np.full((3, 8), 255, dtype=np.uint8), 7)
    assert list(lims) == [0, 0, 0, 0] and not len(labels)


def test_only_64_bit_codes_and_tables_of_at_most_22_bits():
    with pytest.raises(ValueError):
        DirectMultiIndex(np.zeros((4, 16), dtype=np.uint8), 4, 16, 1)
    with pytest.raises(ValueError):
        DirectMultiIndex(np.zeros((4, 8), dtype=np.uint8), 2, 32, 3)


def test_hamming_index_uses_direct_tables_for_64_bit_codes_and_faiss_for_others(monkeypatch):
    monkeypatch.setattr(neighbours, "HAMMING_EXACT_LIMIT", 100)
    rng = np.random.default_rng(3)
    codes = _clustered_codes(rng, 1_000)
    index, method = neighbours._hamming_index(codes, 6)
    assert isinstance(index, DirectMultiIndex) and method.startswith("multi-index hashing")
    wide = np.concatenate([codes, codes[::-1]], axis=1)  # 128-bit codes
    index, method = neighbours._hamming_index(wide, 6)
    assert isinstance(index, faiss.IndexBinaryMultiHash) and method.endswith("FAISS IndexBinaryMultiHash")
    probes = wide[:50]
    flat = faiss.IndexBinaryFlat(128)
    flat.add(wide)
    np.testing.assert_array_equal(_rows(*index.range_search(probes, 7)), _rows(*flat.range_search(probes, 7)))


@pytest.mark.parametrize("plan", [(3, 21, 2), (4, 16, 1), (6, 10, 0)])
@pytest.mark.parametrize("k", [1, 5, 10_000])
def test_nearest_gives_each_probes_k_nearest_as_the_range_search_then_the_cut_does(plan, k):
    """Ties at the cut go to the lower code; a code found in several tables counts once; the rows come in (probe,
    code) order."""
    rng = np.random.default_rng(4)
    codes = np.concatenate([np.repeat(codes_one(rng), 40, axis=0), _clustered_codes(rng, 3_000)])
    probes = np.concatenate([codes[:2], _near(rng, codes, 400), rng.integers(0, 256, (100, 8), dtype=np.uint8)])
    index = DirectMultiIndex(codes, *plan)
    radius = plan[0] * (plan[2] + 1) - 1
    for r in sorted({2, radius, radius + 1}):  # radius + 1: beyond what the plan is complete for, still a subset
        got = index.nearest(probes, r, k)
        found_within = _rows(*index.range_search(probes, r + 1))
        np.testing.assert_array_equal(got, neighbours.nearest_per_probe(found_within, k))
        if r <= radius:
            np.testing.assert_array_equal(found_within, _flat_rows(codes, probes, r + 1))
    first = got[got[:, 0] == 0]  # a probe with 40 identical codes: the k lowest of them where k cuts
    assert len(first) >= 40 if k > 40 else list(first[:, 1]) == list(range(k))


def codes_one(rng):
    return rng.integers(0, 256, (1, 8), dtype=np.uint8)


def test_nearest_with_small_blocks_and_budgets_gives_the_same_rows(monkeypatch):
    rng = np.random.default_rng(5)
    codes = np.concatenate([np.repeat(codes_one(rng), 300, axis=0), _clustered_codes(rng, 2_000)])
    probes = np.concatenate([codes[:3], _near(rng, codes, 300)])
    whole = DirectMultiIndex(codes, 4, 16, 1).nearest(probes, 6, 20)
    monkeypatch.setattr(multi_index, "PROBES_PER_BLOCK", 7)
    monkeypatch.setattr(multi_index, "CANDIDATES_PER_BLOCK", 50)
    np.testing.assert_array_equal(DirectMultiIndex(codes, 4, 16, 1).nearest(probes, 6, 20), whole)
    np.testing.assert_array_equal(whole, neighbours.nearest_per_probe(_flat_rows(codes, probes, 7), 20))
    assert DirectMultiIndex(codes, 4, 16, 1).nearest(probes[:0], 6, 20).shape == (0, 3)
