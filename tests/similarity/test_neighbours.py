"""Unit tests for auditor/neighbours.py: FAISS searches checked against brute-force numpy."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest

import auditor.similarity.neighbours as neighbour_search
from auditor.similarity.neighbours import cosine_pairs, hamming_pairs, hex_to_codes, knn, normalise

# Brute-force references ---------------------------------------------------------------------


def brute_hamming(codes: np.ndarray, max_distance: int, queries: np.ndarray | None = None) -> set[tuple[int, int, int]]:
    probe = codes if queries is None else queries
    distances = np.unpackbits(probe[:, None, :] ^ codes[None, :, :], axis=2).sum(axis=2)
    found = set()
    for i, j in zip(*np.nonzero(distances <= max_distance)):
        if queries is None and i >= j:
            continue
        found.add((int(i), int(j), int(distances[i, j])))
    return found


def as_set(pairs: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in row) for row in pairs}


def clustered_codes(rng: np.random.Generator, n_bases: int = 30, per_base: int = 5) -> np.ndarray:
    """Random 64-bit codes in small clusters, so every radius from 0 up has pairs to find."""
    bases = rng.integers(0, 256, (n_bases, 8), dtype=np.uint8)
    codes = []
    for base in bases:
        for _ in range(per_base):
            bits = np.unpackbits(base)
            flip = rng.choice(64, size=rng.integers(0, 9), replace=False)
            bits[flip] ^= 1
            codes.append(np.packbits(bits))
    codes = np.array(codes, dtype=np.uint8)
    codes[1] = codes[0]  # at least one exact pair
    return codes


def random_unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    return normalise(rng.normal(size=(n, dim)))


# Hamming ------------------------------------------------------------------------------------

def test_hex_to_codes_layout_and_distance_match_imagehash():
    codes = hex_to_codes(["8000000000000001", "ffffffffffffffff"])
    assert codes.dtype == np.uint8 and codes.shape == (2, 8)
    assert codes[0].tolist() == [0x80, 0, 0, 0, 0, 0, 0, 1]
    a, b = "c3a5f00f12345678", "c3a5f00f1234567f"
    pair = hex_to_codes([a, b])
    assert int(np.unpackbits(pair[0] ^ pair[1]).sum()) == imagehash.hex_to_hash(a) - imagehash.hex_to_hash(b)
    assert hex_to_codes([]).shape == (0, 8)


@pytest.mark.parametrize("radius", [0, 2, 5, 8, 20])
def test_hamming_pairs_match_brute_force(radius):
    codes = clustered_codes(np.random.default_rng(radius))
    pairs = hamming_pairs(codes, radius)
    assert pairs.shape[1] == 3
    assert as_set(pairs) == brute_hamming(codes, radius)
    assert len(as_set(pairs)) == len(pairs)  # no pair twice
    assert (pairs[:, 0] < pairs[:, 1]).all()
    assert len(pairs) > 0


def test_hamming_radius_is_inclusive():
    base = np.zeros(8, dtype=np.uint8)
    other = base.copy()
    other[0] = 0b0001_1111  # exactly 5 bits apart
    codes = np.stack([base, other])
    assert as_set(hamming_pairs(codes, 5)) == {(0, 1, 5)}
    assert as_set(hamming_pairs(codes, 4)) == set()


@pytest.mark.parametrize("radius", [0, 3, 8])
def test_hamming_pairs_with_queries_match_brute_force(radius):
    rng = np.random.default_rng(100 + radius)
    codes = clustered_codes(rng)
    # Queries: some copies of codes with a few flipped bits (like mirrored hashes), some unrelated.
    queries = codes[rng.permutation(len(codes))[:60]].copy()
    queries[:, 0] ^= rng.integers(0, 4, 60, dtype=np.uint8)
    queries = np.concatenate([queries, rng.integers(0, 256, (20, 8), dtype=np.uint8)])
    pairs = hamming_pairs(codes, radius, queries=queries)
    expected = brute_hamming(codes, radius, queries=queries)
    assert as_set(pairs) == expected
    assert len(pairs) == len(expected) > 0
    assert any(i >= j for i, j, _ in expected)  # with queries, (i, j) is not restricted to i < j


# Cosine -------------------------------------------------------------------------------------

def planted_unit_vectors(rng: np.random.Generator, n: int, dim: int, n_planted: int, noise: float) -> tuple[np.ndarray, set]:
    x = rng.normal(size=(n, dim))
    planted = set()
    partners = rng.permutation(n)[: 2 * n_planted].reshape(n_planted, 2)
    for a, b in partners:
        x[b] = x[a] + noise * rng.normal(size=dim) * np.linalg.norm(x[a]) / np.sqrt(dim)
        planted.add((int(min(a, b)), int(max(a, b))))
    return normalise(x), planted


@pytest.mark.parametrize("threshold", [0.3, 0.6, 0.9])
def test_cosine_pairs_match_brute_force(threshold):
    rng = np.random.default_rng(int(threshold * 10))
    unit, _ = planted_unit_vectors(rng, 300, 8, n_planted=20, noise=0.3)
    pairs, sims = cosine_pairs(unit, threshold)
    gram = unit @ unit.T
    found = as_set(pairs)
    assert len(found) == len(pairs) > 0
    assert (pairs[:, 0] < pairs[:, 1]).all()  # i < j, hence no self pairs
    must = {(i, j) for i, j in zip(*np.nonzero(gram > threshold + 1e-5)) if i < j}
    may = {(i, j) for i, j in zip(*np.nonzero(gram >= threshold - 1e-5)) if i < j}
    assert must <= found <= may
    np.testing.assert_allclose(sims, gram[pairs[:, 0], pairs[:, 1]], atol=1e-5)
    assert sims.dtype == np.float32


def test_cosine_pairs_of_fewer_than_two_vectors():
    for n in (0, 1):
        pairs, sims = cosine_pairs(np.ones((n, 4), np.float32) / 2, 0.5)
        assert pairs.shape == (0, 2) and sims.shape == (0,)


def test_identical_vectors_are_a_pair_not_a_self_pair():
    unit = normalise(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    pairs, sims = cosine_pairs(unit, 0.99)
    assert as_set(pairs) == {(0, 1)}
    np.testing.assert_allclose(sims, [1.0], atol=1e-6)


@pytest.mark.parametrize("with_queries", [False, True])
def test_knn_matches_brute_force(with_queries):
    rng = np.random.default_rng(7)
    unit = random_unit(rng, 200, 12)
    queries = random_unit(rng, 25, 12) if with_queries else None
    sims, labels = knn(unit, 5, queries=queries)
    q = unit if queries is None else queries
    gram = q @ unit.T
    expected = np.argsort(-gram, axis=1)[:, :5]
    assert sims.shape == labels.shape == (len(q), 5)
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_allclose(sims, np.take_along_axis(gram, expected, axis=1), atol=1e-5)
    if queries is None:
        np.testing.assert_array_equal(labels[:, 0], np.arange(len(unit)))  # each vector is its own nearest


def test_knn_k_larger_than_n_is_clipped():
    unit = random_unit(np.random.default_rng(8), 3, 4)
    sims, labels = knn(unit, 10)
    assert labels.shape == (3, 3)
    assert sorted(labels[0].tolist()) == [0, 1, 2]


# The approximate path -----------------------------------------------------------------------

def test_approximate_cosine_pairs_find_planted_pairs(monkeypatch):
    monkeypatch.setattr(neighbour_search, "EXACT_LIMIT", 50)
    rng = np.random.default_rng(11)
    unit, planted = planted_unit_vectors(rng, 600, 32, n_planted=15, noise=0.05)
    gram = unit @ unit.T
    np.fill_diagonal(gram, -1)
    assert {(i, j) for i, j in zip(*np.nonzero(gram >= 0.95)) if i < j} == planted  # only the planted are close
    pairs, sims = cosine_pairs(unit, 0.95)
    assert as_set(pairs) == planted
    assert len(pairs) == len(planted)  # each pair once, though both ends find each other
    assert (pairs[:, 0] < pairs[:, 1]).all()
    np.testing.assert_allclose(sims, gram[pairs[:, 0], pairs[:, 1]], atol=1e-5)


def test_approximate_knn_finds_partners(monkeypatch):
    monkeypatch.setattr(neighbour_search, "EXACT_LIMIT", 50)
    rng = np.random.default_rng(12)
    unit, planted = planted_unit_vectors(rng, 600, 32, n_planted=15, noise=0.05)
    sims, labels = knn(unit, 4)
    for a, b in planted:
        assert labels[a, 0] == a and labels[a, 1] == b
        assert labels[b, 1] == a


def test_drop_self_keeps_the_first_k_others_in_order():
    neighbours = np.array([[0, 3, 2], [2, 1, 0], [1, -1, 2]])
    sims = np.array([[1.0, 0.9, 0.8], [0.99, 0.98, 0.5], [0.7, np.nan, 1.0]])
    kept_sims, kept = neighbour_search.drop_self(sims, neighbours, 2)
    assert kept.tolist() == [[3, 2], [2, 0], [1, -1]]  # row 2: only one real neighbour besides itself
    assert kept_sims[1].tolist() == [0.99, 0.5]


# Approximate search (forced with a small exact limit) ----------------------------------------------

def clustered_unit(rng: np.random.Generator, n: int, dim: int = 48, centres: int = 40) -> np.ndarray:
    c = rng.normal(size=(centres, dim))
    x = c[rng.integers(0, centres, n)] + 0.6 * rng.normal(size=(n, dim))
    return normalise(x).astype(np.float16)


@pytest.fixture
def approximate(monkeypatch):
    monkeypatch.setattr(neighbour_search, "EXACT_LIMIT", 500)
    monkeypatch.setattr(neighbour_search, "HAMMING_EXACT_LIMIT", 100)
    monkeypatch.setattr(neighbour_search, "REDUCED_DIMS", 16)
    monkeypatch.setattr(neighbour_search, "RECALL_QUERIES", 150)


def brute_knn(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = q.astype(np.float32) @ x.astype(np.float32).T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), order


@pytest.mark.slow  # seconds: run by `make test`, not the edit-test loop
def test_approximate_knn_returns_exact_cosines_and_most_true_neighbours(approximate):
    x = clustered_unit(np.random.default_rng(0), 3000)
    sims, labels = knn(x, 6)
    assert sims.shape == labels.shape == (3000, 6)
    # Every similarity returned is the exact cosine of the pair it names.
    exact = np.einsum("ij,ikj->ik", x.astype(np.float32), x[labels].astype(np.float32))
    np.testing.assert_allclose(sims, exact, atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # best first
    true_sims, true_labels = brute_knn(x, x, 6)
    recall = np.mean([len(set(a) & set(b)) / 6 for a, b in zip(true_labels, labels)])
    # Hard data for a 16-dimension PCA (48 dims, 40 overlapping clusters): about 0.78. What matters is that
    # the recall the module reports is the true one, checked next.
    assert recall > 0.7
    # The recall the module measures on its own sample agrees with the brute-force one over every row
    # (same definition: recall@k of the self-query, the query itself left out).
    quality = neighbour_search.search_quality(x, 5)
    assert not quality.exact and quality.queries_measured == 150
    k = quality.k
    _found_sims, found = neighbour_search.drop_self(*knn(x, k + 1), k)
    _true_sims, truth = neighbour_search.drop_self(*brute_knn(x, x, k + 1), k)
    full_recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(truth, found)])
    assert abs(quality.recall - full_recall) < 0.06
    assert quality.recall_interval[0] <= quality.recall <= quality.recall_interval[1]
    assert quality.to_dict()["parameters"]["index"] == "HNSW" and quality.to_dict()["parameters"]["ef_search"] >= 1


def test_a_search_in_visit_order_is_the_search_in_row_order(approximate, monkeypatch):
    """The shared k-NN graph's queries are searched in the order of their first reduced coordinate (so the stored
    rows a block re-ranks lie in a narrow band): every row's neighbours and cosines the same as searched in row
    order, block by block."""
    monkeypatch.setattr(neighbour_search, "BLOCK", 256)  # several blocks, each a different set in each order
    x = clustered_unit(np.random.default_rng(8), 3000).astype(np.float16)
    index = neighbour_search._index_for(x)
    assert not np.array_equal(index.visit_order, np.arange(3000))
    assert np.array_equal(np.sort(index.visit_order), np.arange(3000))
    sims, labels = index.search(x, neighbour_search.SELF_K, order=index.visit_order)
    plain_sims, plain_labels = index.search(x, neighbour_search.SELF_K)
    assert np.array_equal(labels, plain_labels) and np.array_equal(sims, plain_sims)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_re_ranking_returns_the_exact_top_k_among_the_graph_candidates(approximate, dtype):
    """The search's answer is, for each query, the k best of the HNSW graph's candidates by exact cosine on the
    stored rows: what a numpy re-ranking of the same candidates gives."""
    import faiss

    x = clustered_unit(np.random.default_rng(4), 3000).astype(dtype)
    index = neighbour_search.ApproximateIndex(x)
    k = 8
    sims, labels = index.search(x, k)
    fetch = max(k * neighbour_search.REFINE_FACTOR, k + 8)
    params = faiss.SearchParametersHNSW()
    params.efSearch = max(neighbour_search.HNSW_EF_SEARCH, fetch)
    _approx, candidates = index.index.search(index._reduce(x), fetch, params=params)
    exact = np.einsum("ij,ikj->ik", x.astype(np.float32), x[candidates].astype(np.float32))
    order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
    same_rows = np.isclose(np.take_along_axis(exact, order, axis=1), sims, atol=1e-5).all(axis=1)
    assert same_rows.mean() > 0.99  # rounding of the PCA step inside FAISS may change a rare candidate
    assert (labels[same_rows] == np.take_along_axis(candidates, order, axis=1)[same_rows]).mean() > 0.99  # ties swap
    truth = np.einsum("ij,ikj->ik", x.astype(np.float32), x[labels].astype(np.float32))
    np.testing.assert_allclose(sims, truth, atol=1e-5)  # every cosine returned is the exact one


def test_re_ranking_reads_the_stored_rows_in_place(tmp_path):
    """No copy of the rows: the re-ranking index is a view of the (memory-mapped) matrix, and answers as exact
    search does, also after the caller dropped its own reference."""
    x = clustered_unit(np.random.default_rng(6), 800)
    np.save(tmp_path / "rows.npy", x)
    mapped = np.load(tmp_path / "rows.npy", mmap_mode="r")
    for rows in (mapped, x.astype(np.float32)):
        stored = neighbour_search.stored_rows_index(rows)
        assert not stored.codes.is_owned and stored.ntotal == len(rows)
        assert int(stored.codes.data()) == rows.ctypes.data  # FAISS reads the matrix's own bytes
        q = rows[:50].astype(np.float32)
        del rows
        sims, labels = stored.search(q, 5)
        true_sims, true_labels = brute_knn(x, q, 5)
        np.testing.assert_allclose(sims, true_sims, atol=1e-3)
        assert (labels == true_labels).mean() > 0.98


def test_recall_measured_from_the_shared_graph_leaves_the_query_out(approximate, monkeypatch):
    """The recall reported (measured on a sample when the index is built) is that of the neighbours other than the
    query itself: the same number as a brute-force comparison of the shared graph over every row (it once counted
    the query as a neighbour, so it never passed 0.9)."""
    monkeypatch.setattr(neighbour_search, "REDUCED_DIMS", 48)  # no dimension dropped: recall near 1, where
    x = clustered_unit(np.random.default_rng(0), 3000)  # counting the query as a neighbour would cap it at 0.9
    knn(x, neighbour_search.SELF_K)
    quality = neighbour_search.search_quality(x, 10)
    _s, found = neighbour_search.drop_self(*knn(x, 11), 10)
    _t, truth = neighbour_search.drop_self(*brute_knn(x, x, 11), 10)
    full_recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)])
    assert full_recall > 0.92
    assert abs(quality.recall - full_recall) < 0.05


def test_recall_measurement_sees_a_poor_index(approximate, monkeypatch):
    monkeypatch.setattr(neighbour_search, "HNSW_EF_SEARCH", 1)
    monkeypatch.setattr(neighbour_search, "REFINE_FACTOR", 1)
    monkeypatch.setattr(neighbour_search, "MAX_REFINE_FACTOR", 1)  # no tuning: the loss must show
    monkeypatch.setattr(neighbour_search, "REDUCED_DIMS", 2)
    x = clustered_unit(np.random.default_rng(1), 3000, centres=3)
    quality = neighbour_search.search_quality(x, 10)
    assert quality.recall < 0.8  # the measurement reports the loss rather than assuming recall 1


def test_the_index_is_built_once_per_matrix_and_restricted_search_stays_among(approximate):
    x = clustered_unit(np.random.default_rng(2), 2000)
    knn(x, 5)
    first = neighbour_search._index_for(x)
    knn(x, 3, queries=x[:10])
    assert neighbour_search._index_for(x) is first
    among = np.arange(0, 2000, 2)  # even rows only
    sims, labels = knn(x, 4, queries=x[1:200:2], among=among)
    assert (labels % 2 == 0).all()
    _true_sims, true_labels = brute_knn(x[among], x[1:200:2], 4)
    recall = np.mean([len(set(a) & set(b)) / 4 for a, b in zip(among[true_labels], labels)])
    assert recall > 0.75  # measured 0.84 on this data (restricted searches probe more lists, are not measured)


def test_multi_hash_plans_probe_enough_keys_to_be_complete():
    for n in (1_000, 300_000, 10**6, 10**8):
        for radius in range(0, 13):
            tables, table_bits, flips = neighbour_search._multi_hash_plan(n, 64, radius)
            assert tables * table_bits <= 64 and 6 <= table_bits <= 24
            assert tables * (flips + 1) > radius  # some table holds at most `flips` of the differing bits
    assert neighbour_search._multi_hash_plan(10**6, 64, 6) == (3, 21, 2)  # not 7 tables of 9 bits: 14× fewer checks


def test_multi_index_hamming_search_is_complete_and_measured(approximate):
    codes = clustered_codes(np.random.default_rng(5), n_bases=60, per_base=6)
    for radius in (2, 5, 6, 10):
        quality: list = []
        pairs = hamming_pairs(codes, radius, quality=quality)
        assert as_set(pairs) == brute_hamming(codes, radius)
        assert not quality[0].exact and quality[0].recall == 1.0
        mirrored = codes[::-1].copy()
        assert as_set(hamming_pairs(codes, radius, queries=mirrored)) == brute_hamming(codes, radius, mirrored)


def test_streamed_exact_search_matches_brute_force_over_all_rows_or_some():
    x = clustered_unit(np.random.default_rng(3), 1000)
    q = x[:40]
    sims, rows = neighbour_search.exact_search_streamed(x, q, 5, block=97)  # many blocks merged
    true_sims, true_rows = brute_knn(x, q, 5)
    np.testing.assert_allclose(sims, true_sims, atol=1e-5)
    assert (rows == true_rows).mean() > 0.98  # float16 ties may swap equal neighbours
    among = np.arange(1, 1000, 3)
    sims, rows = neighbour_search.exact_search_streamed(x, q, 3, among=among, block=50)
    true_sims, true_rows = brute_knn(x[among], q, 3)
    np.testing.assert_allclose(sims, true_sims, atol=1e-5)
    assert np.isin(rows, among).all() and (rows == among[true_rows]).mean() > 0.98
    # Blocks narrower than k (each kept whole), fewer rows than k (all of them, best first), no rows at all.
    sims, rows = neighbour_search.exact_search_streamed(x, q, 6, among=among[:9], block=4)
    true_sims, true_rows = brute_knn(x[among[:9]], q, 6)
    np.testing.assert_allclose(sims, true_sims, atol=1e-5)
    sims, rows = neighbour_search.exact_search_streamed(x, q, 6, among=among[:4], block=3)
    assert rows.shape == (40, 4) and (np.sort(rows, axis=1) == np.sort(among[:4])).all()
    assert (np.diff(sims, axis=1) <= 0).all()
    sims, rows = neighbour_search.exact_search_streamed(x, q, 6, among=among[:0])
    assert sims.shape == rows.shape == (40, 0)


@pytest.mark.slow  # 1.4-3 s: `make test` runs it, the edit-test loop does not
def test_a_matrix_the_reduced_space_ranks_poorly_gets_more_candidates_re_ranked_until_recall_is_reached(
        approximate, monkeypatch):
    """Where the PCA keeps too little to rank near neighbours (here 4 of 48 dimensions), the refine factor is
    doubled until the measured recall reaches the target; the self-graph every check reads is searched with it,
    and the report's parameters show the steps."""
    monkeypatch.setattr(neighbour_search, "REDUCED_DIMS", 4)
    x = clustered_unit(np.random.default_rng(7), 3000, centres=6)
    untuned = neighbour_search.ApproximateIndex(x).measure(10)
    assert untuned.recall < neighbour_search.TARGET_RECALL  # the world is one the default cannot serve
    quality = neighbour_search.search_quality(x, 10)
    index = neighbour_search._index_for(x)
    assert index.refine_factor > neighbour_search.REFINE_FACTOR
    assert quality.recall > untuned.recall + 0.05
    assert quality.parameters["refine_factor"] == index.refine_factor
    steps = quality.parameters["refine_factor_steps"]
    assert [s["refine_factor"] for s in steps][0] == neighbour_search.REFINE_FACTOR and len(steps) >= 2
    _s, found = neighbour_search.drop_self(*knn(x, 11), 10)
    _t, truth = neighbour_search.drop_self(*brute_knn(x, x, 11), 10)
    graph_recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)])
    assert graph_recall > untuned.recall + 0.05  # the shared graph itself is better, not only the measurement


def test_the_background_error_is_the_kth_cosines_shortfall_relative_to_one_minus_the_exact_one():
    """The error a search puts into a scaled cosine (c − b) / (1 − b): 0.01 short where 1 − b is 0.01 is an error of
    1; found as high as exact (or higher) is none; a missing k-th (−1) counts as found at −1."""
    assert neighbour_search.background_error(np.array([0.99, 0.9]), np.array([0.98, 0.9])) == pytest.approx(0.5)
    assert neighbour_search.background_error(np.array([0.5]), np.array([0.6])) == 0.0
    assert neighbour_search.background_error(np.array([0.5]), np.array([-1.0])) == pytest.approx(3.0)
    assert neighbour_search.background_error(np.zeros(0), np.zeros(0)) == 0.0


def test_the_search_widens_its_walk_for_the_backgrounds_and_re_ranks_more_for_recall():
    """efSearch doubles first while the background error misses its target (up to MAX_EF_SEARCH), then the refine
    factor while recall does (up to MAX_REFINE_FACTOR); both met, or both at their limits: no further step."""
    step = neighbour_search.next_search_step
    target, error_target = neighbour_search.TARGET_RECALL, neighbour_search.BACKGROUND_ERROR_TARGET
    max_ef, max_rf = neighbour_search.MAX_EF_SEARCH, neighbour_search.MAX_REFINE_FACTOR
    assert step(target, error_target, 2, 32) is None
    assert step(target, error_target + 0.01, 4, 32) == (4, 64)
    assert step(target - 0.01, error_target + 0.01, 2, 32) == (2, 64)  # the backgrounds first: the walk is cheap
    assert step(target - 0.01, error_target + 0.01, 2, max_ef) == (4, max_ef)
    assert step(target - 0.01, 0.0, 4, 32) == (8, 32)
    assert step(target - 0.01, error_target + 0.01, max_rf, max_ef) is None


def test_an_index_whose_backgrounds_miss_the_target_walks_wider_and_says_so(approximate, monkeypatch):
    """Where the k-th neighbour's cosine stays further from exact search's than BACKGROUND_ERROR_TARGET allows (here
    a target no search can meet), efSearch doubles up to MAX_EF_SEARCH, the search uses it and the description says
    so, and each step's measured background error is reported; a target every search meets leaves the defaults."""
    x = clustered_unit(np.random.default_rng(9), 2000)
    monkeypatch.setattr(neighbour_search, "BACKGROUND_ERROR_TARGET", -1.0)
    monkeypatch.setattr(neighbour_search, "TARGET_RECALL", 0.0)
    quality = neighbour_search.search_quality(x, 10)
    index = neighbour_search._index_for(x)
    assert index.ef_search == neighbour_search.MAX_EF_SEARCH and index.refine_factor == neighbour_search.REFINE_FACTOR
    steps = quality.parameters["refine_factor_steps"]
    assert [s["ef_search"] for s in steps] == [32, 64, 128, 256]
    assert all(s["background_error"] >= 0 for s in steps)
    assert quality.parameters["background_error"] == steps[-1]["background_error"]
    assert quality.parameters["ef_search"] == 256 and "efSearch 256" in quality.method
    knn(x, 11)  # the shared graph: its narrow walk misses this target too, so every row is searched at the tuned walk
    assert neighbour_search.search_quality(x, 10).parameters["self_graph"]["ef_search"] == 256
    y = clustered_unit(np.random.default_rng(10), 2000)
    monkeypatch.setattr(neighbour_search, "BACKGROUND_ERROR_TARGET", 10.0)
    defaults = neighbour_search.search_quality(y, 10).parameters
    assert (defaults["refine_factor"], defaults["ef_search"]) == (neighbour_search.REFINE_FACTOR,
                                                                  neighbour_search.HNSW_EF_SEARCH)


def test_an_index_that_already_reaches_the_target_keeps_the_default_refine_factor(approximate, monkeypatch):
    monkeypatch.setattr(neighbour_search, "REDUCED_DIMS", 48)  # nothing dropped: the default ranks well
    x = clustered_unit(np.random.default_rng(8), 2000)
    quality = neighbour_search.search_quality(x, 10)
    assert quality.recall >= neighbour_search.TARGET_RECALL
    assert neighbour_search._index_for(x).refine_factor == neighbour_search.REFINE_FACTOR
    assert "refine_factor_steps" not in quality.parameters


def test_multi_index_hamming_search_returns_the_flat_searchs_pairs_in_its_order(monkeypatch):
    """Above HAMMING_EXACT_LIMIT the multi-index search answers: the same (query, code, distance) rows in the same
    order as the exact flat search (the duplicate decision keeps first sightings, so order matters)."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (400, 8), dtype=np.uint8)
    near = base[rng.integers(0, 400, 600)].copy()
    flips = rng.integers(0, 64, (600, 3))  # up to 3 bits flipped: within the radius of 6
    for row, bits in enumerate(flips):
        for bit in bits:
            near[row, bit // 8] ^= np.uint8(1 << (bit % 8))
    codes = np.concatenate([base, near])
    queries = np.concatenate([near[::-1], rng.integers(0, 256, (100, 8), dtype=np.uint8)])
    monkeypatch.setattr(neighbour_search, "HAMMING_EXACT_LIMIT", 10**9)
    flat = hamming_pairs(codes, 6, queries=queries)
    flat_self = hamming_pairs(codes, 6)
    monkeypatch.setattr(neighbour_search, "HAMMING_EXACT_LIMIT", 100)
    quality: list = []
    multi = hamming_pairs(codes, 6, queries=queries, quality=quality)
    assert quality[0].method.startswith("multi-index") and quality[0].recall == 1.0
    assert len(flat) > 600
    np.testing.assert_array_equal(multi, flat)
    np.testing.assert_array_equal(hamming_pairs(codes, 6), flat_self)


@pytest.mark.parametrize("exact_limit", [10**9, 100])
def test_hamming_search_in_chunks_on_threads_returns_the_single_searchs_rows_and_reduces_each_chunk(monkeypatch,
                                                                                                   exact_limit):
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (300, 8), dtype=np.uint8)
    near = base[rng.integers(0, 300, 500)].copy()
    for row, bits in enumerate(rng.integers(0, 64, (500, 2))):
        for bit in bits:
            near[row, bit // 8] ^= np.uint8(1 << (bit % 8))
    codes = np.concatenate([base, near])
    queries = np.concatenate([near, base])
    monkeypatch.setattr(neighbour_search, "HAMMING_EXACT_LIMIT", exact_limit)
    whole = hamming_pairs(codes, 6, queries=queries)
    monkeypatch.setattr(neighbour_search, "HAMMING_CHUNK", 37)  # 22 chunks, on two threads
    np.testing.assert_array_equal(hamming_pairs(codes, 6, queries=queries), whole)
    seen = []

    def reduce(rows):
        seen.append(len(rows))
        return rows[rows[:, 2] == 0]  # query numbers are global: keep exact matches only

    reduced = hamming_pairs(codes, 6, queries=queries, reduce=reduce)
    assert len(seen) == -(-len(queries) // 37) and sum(seen) == len(whole)
    np.testing.assert_array_equal(reduced, whole[whole[:, 2] == 0])


def _clustered_64bit(rng, n, centres=40, flip=0.04):
    base = rng.integers(0, 256, (centres, 8), dtype=np.uint8)
    bits = np.unpackbits(base[rng.integers(0, centres, n)], axis=1)
    return np.packbits(bits ^ (rng.random(bits.shape) < flip), axis=1)


_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint8)


def _hamming_distances(codes, probes):
    # Bits set per byte (unpacking every bit of probes × codes held 64 bytes per pair: ≈ 1 GB in the test below).
    if hasattr(np, "bitwise_count"):  # numpy ≥ 2: one popcount per 64-bit word
        words = lambda x: np.ascontiguousarray(x).view(np.uint64)
        return np.bitwise_count(words(probes) ^ words(codes).T).astype(np.int16)
    return _BYTE_BITS[probes[:, None, :] ^ codes[None, :, :]].sum(axis=2, dtype=np.int16)


def _brute_nearest(codes, probes, radius, k, distance=None):
    distance = _hamming_distances(codes, probes) if distance is None else distance
    rows = []
    for p in range(len(probes)):
        within = np.flatnonzero(distance[p] <= radius)
        order = within[np.lexsort((within, distance[p, within]))][:k]
        rows += [(p, int(c), int(distance[p, c])) for c in sorted(order)]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


@pytest.mark.parametrize("exact_limit", [10**9, 100])  # flat, and multi-index hashing (complete)
def test_hamming_nearest_is_exact_below_the_limit(monkeypatch, exact_limit):
    from auditor.similarity.neighbours import hamming_nearest

    monkeypatch.setattr(neighbour_search, "HAMMING_EXACT_LIMIT", exact_limit)
    rng = np.random.default_rng(7)
    codes = _clustered_64bit(rng, 600)
    probes = np.concatenate([codes[:150], rng.integers(0, 256, (50, 8), dtype=np.uint8)])
    quality: list = []
    found = hamming_nearest(codes, probes, 6, k=5, quality=quality)
    np.testing.assert_array_equal(found, _brute_nearest(codes, probes, 6, 5))
    assert quality[0].exact and quality[0].kind == "hamming_nearest"
    assert ("multi-index" in quality[0].method) == (exact_limit == 100)


def _approximate_case(seed):
    rng = np.random.default_rng(seed)
    codes = np.concatenate([_clustered_64bit(rng, 3000, centres=200), rng.integers(0, 256, (3000, 8), dtype=np.uint8)])
    probes = np.concatenate([codes[::3], _clustered_64bit(rng, 500, centres=200)])
    return codes, probes


@pytest.mark.slow  # ≈ 2 s: `make test` runs it, the edit-test loop does not
def test_hamming_nearest_above_the_limit_is_approximate_and_says_how_close(monkeypatch):
    from auditor.similarity.neighbours import hamming_nearest

    codes, probes = _approximate_case(8)
    monkeypatch.setattr(neighbour_search, "HAMMING_APPROXIMATE_FROM", 1000)
    monkeypatch.setattr(neighbour_search, "TARGET_RECALL", 0.5)
    monkeypatch.setattr(neighbour_search, "HAMMING_QUALITY_SAMPLE", len(probes) - 1)  # measure all but one probe
    quality: list = []
    found = hamming_nearest(codes, probes, 6, k=8, quality=quality)
    distance = _hamming_distances(codes, probes)
    truth = _brute_nearest(codes, probes, 6, 8, distance)
    record = quality[0]
    # the tables planned for 5 bits (6 of 10 bits, exact keys), searched within 6
    assert not record.exact and record.method.startswith("approximate: multi-index hashing: 6 tables of 10 bits")
    assert (record.parameters["tables"], record.parameters["table_bits"], record.parameters["flips"]) == (6, 10, 0)
    assert as_set(found) <= as_set(_brute_nearest(codes, probes, 6, 100, distance))  # within the radius
    assert as_set(truth[truth[:, 2] <= 5]) <= as_set(found)  # complete within one bit less
    # its reported recall is the recall against exact search, probe by probe; the share of matches found beside it
    sampled = np.sort(np.random.default_rng(0).choice(len(probes), len(probes) - 1, replace=False))
    per_probe = [len(as_set(found[found[:, 0] == p]) & as_set(truth[truth[:, 0] == p])) / (truth[:, 0] == p).sum()
                 for p in np.unique(truth[:, 0]) if p in sampled]
    assert record.recall == pytest.approx(np.mean(per_probe), abs=1e-9)
    assert 0.5 <= record.recall < 1.0
    in_sample = truth[np.isin(truth[:, 0], sampled)]
    assert record.parameters["matches_found"] == pytest.approx(
        len(as_set(in_sample) & as_set(found)) / len(in_sample), abs=1e-4)
    assert record.parameters["probes_with_matches"] == len(per_probe)


@pytest.mark.slow
def test_hamming_nearest_searches_completely_where_the_cheaper_tables_miss_too_much(monkeypatch):
    from auditor.similarity.neighbours import hamming_nearest

    codes, probes = _approximate_case(9)
    monkeypatch.setattr(neighbour_search, "HAMMING_APPROXIMATE_FROM", 1000)
    monkeypatch.setattr(neighbour_search, "TARGET_RECALL", 0.999)
    monkeypatch.setattr(neighbour_search, "HAMMING_QUALITY_SAMPLE", 1000)
    quality: list = []
    found = hamming_nearest(codes, probes, 6, k=64, quality=quality)
    assert quality[0].exact and quality[0].method.startswith("exact: multi-index hashing: 4 tables of 16 bits")
    assert "the tables for 5 bits found 0.9" in quality[0].method and "below 0.999" in quality[0].method
    np.testing.assert_array_equal(found, _brute_nearest(codes, probes, 6, 64))
    few = codes[:100]  # fewer probes than the sample: searched exactly
    quality = []
    assert np.array_equal(hamming_nearest(codes, few, 6, k=8, quality=quality), _brute_nearest(codes, few, 6, 8))
    assert quality[0].exact and quality[0].method.startswith("exact: multi-index hashing: ")  # what searched them


@pytest.mark.slow  # ≈ 1 s
@pytest.mark.parametrize("approximate_from", [1000, 10**9])
def test_probes_that_share_a_code_are_searched_once_with_the_same_result(monkeypatch, approximate_from):
    from auditor.similarity.neighbours import hamming_nearest

    rng = np.random.default_rng(10)
    codes = np.concatenate([_clustered_64bit(rng, 3000, centres=200), rng.integers(0, 256, (3000, 8), dtype=np.uint8)])
    probes = codes[rng.integers(0, 2000, 3000)]  # 3 000 probes of at most 2 000 codes
    monkeypatch.setattr(neighbour_search, "HAMMING_APPROXIMATE_FROM", approximate_from)
    monkeypatch.setattr(neighbour_search, "TARGET_RECALL", 0.5)
    monkeypatch.setattr(neighbour_search, "HAMMING_QUALITY_SAMPLE", 500)
    monkeypatch.setattr(neighbour_search, "HAMMING_CHUNK", 256)  # a code's probes split between chunks too
    asked: list[int] = []
    real_search = neighbour_search._index_nearest

    def counted(index, probe_codes, max_distance, k):
        asked.append(len(probe_codes))
        return real_search(index, probe_codes, max_distance, k)

    monkeypatch.setattr(neighbour_search, "_index_nearest", counted)
    kept = lambda rows: rows[rows[:, 2] > 0]  # a caller's reduction, applied with the probes' own numbers
    grouped = hamming_nearest(codes, probes, 6, k=8, reduce=kept)
    grouped_asked = sum(asked[-12:])  # the 12 chunks of 256 (the sample's searches come first)
    monkeypatch.setattr(neighbour_search, "REPEATED_CODES_SHARE", 1.1)  # never grouped
    asked.clear()
    plain = hamming_nearest(codes, probes, 6, k=8, reduce=kept)
    np.testing.assert_array_equal(grouped, plain)  # the same rows, in (probe, code) order
    assert len(plain) > 1000 and sum(asked[-12:]) == 3000
    assert grouped_asked <= len(np.unique(probes, axis=0)) + 12  # each code once (once per chunk it spans)
    if approximate_from > len(codes):  # complete: the brute-force answer
        truth = _brute_nearest(codes, probes, 6, 8)
        np.testing.assert_array_equal(grouped, truth[truth[:, 2] > 0])


def test_one_exact_graph_serves_every_self_query_of_the_same_vectors(monkeypatch):
    """The duplicate candidates search a float32 copy of the shared float16 matrix, the outliers and the label
    agreement the matrix itself, with 6 to 11 neighbours: one all-pairs search, known by the vectors' values."""
    from auditor.encoding.embedding_store import to_float32

    rng = np.random.default_rng(11)
    x = normalise(rng.normal(size=(300, 16))).astype(np.float16)
    original = neighbour_search._exact_search
    direct_sims, direct_ids = original(to_float32(x), to_float32(x), 11)
    searched: list[int] = []
    monkeypatch.setattr(neighbour_search, "_exact_graphs", {})
    monkeypatch.setattr(neighbour_search, "_exact_search", lambda a, q, k: searched.append(k) or original(a, q, k))
    sims, ids = knn(x, 6)
    assert np.array_equal(ids, direct_ids[:, :6]) and np.array_equal(sims, direct_sims[:, :6])
    sims[:] = 0  # a caller's change does not reach the next caller
    sims, ids = knn(to_float32(x), 11)
    assert np.array_equal(ids, direct_ids) and np.array_equal(sims, direct_sims)
    assert neighbour_search.has_exact_graph(x, 11) and not neighbour_search.has_exact_graph(x, 12)
    assert searched == [11]
    knn(normalise(rng.normal(size=(300, 16))), 5)  # other vectors: a search of their own
    assert searched == [11, 11]


def test_the_exact_graphs_kept_are_the_largest(monkeypatch):
    """One class's images are searched once each (outliers within a class): they must not push out the whole
    dataset's graph, which later checks read."""
    rng = np.random.default_rng(12)
    monkeypatch.setattr(neighbour_search, "_exact_graphs", {})
    whole = normalise(rng.normal(size=(400, 8)))
    knn(whole, 11)
    for _ in range(2 * neighbour_search.EXACT_GRAPHS_KEPT):
        knn(normalise(rng.normal(size=(50, 8))), 11)
    assert neighbour_search.has_exact_graph(whole, 11)
    assert len(neighbour_search._exact_graphs) == neighbour_search.EXACT_GRAPHS_KEPT


def test_exact_search_is_brute_force_best_first_with_ties_by_row(monkeypatch):
    """Blocks of queries on every core, each a matrix product and a partial sort: the same neighbours as a full
    sort, ties (identical vectors) in row order, and rows beyond the matrix padded as FAISS pads them."""
    monkeypatch.setattr(neighbour_search, "EXACT_BLOCK_SIMILARITIES", 64 * 40)  # several blocks of 32 queries
    rng = np.random.default_rng(21)
    x = normalise(rng.normal(size=(64, 8)))
    x[10] = x[3]  # an identical pair
    queries = np.concatenate([x[:50], normalise(rng.normal(size=(30, 8)))])
    sims, ids = neighbour_search._exact_search(x.astype(np.float16), queries, 7)
    # The reference without BLAS: a matrix product may round identical columns differently by their position
    # (seen on a CPU without AVX512-BF16: x[3] and x[10] 1 ulp apart), which would order the tie by chance.
    full = (queries[:, None, :].astype(np.float64) * neighbour_search._f32(x.astype(np.float16))[None]).sum(axis=2)
    expected = np.lexsort((np.broadcast_to(np.arange(64), full.shape), -full), axis=1)[:, :7]
    assert np.array_equal(ids, expected)
    assert np.allclose(sims, np.take_along_axis(full, expected, axis=1), atol=1e-6)
    assert list(ids[3, :2]) == [3, 10] and list(ids[10, :2]) == [3, 10]
    few_sims, few_ids = neighbour_search._exact_search(x[:3], queries[:2], 5)
    assert (few_ids[:, 3:] == -1).all() and (few_sims[:, 3:] == -np.finfo(np.float32).max).all()
    assert sorted(few_ids[0, :3]) == [0, 1, 2]


def test_a_read_only_matrix_is_hashed_once_a_writeable_one_each_time(monkeypatch):
    """The checks ask about the shared (read-only) matrix several times: its fingerprint is kept with the object.
    A writeable array may change under the same object, so it is hashed again."""
    rng = np.random.default_rng(13)
    converted: list[int] = []
    original = neighbour_search._f32
    monkeypatch.setattr(neighbour_search, "_f32", lambda block: converted.append(len(block)) or original(block))
    shared = normalise(rng.normal(size=(50, 8))).astype(np.float16)
    shared.flags.writeable = False
    key = neighbour_search._fingerprint(shared)
    assert neighbour_search._fingerprint(shared) == key and len(converted) == 1
    mine = normalise(rng.normal(size=(50, 8)))
    before = neighbour_search._fingerprint(mine)
    mine[0] = mine[1]
    assert neighbour_search._fingerprint(mine) != before and len(converted) == 3


def test_row_indices_keep_an_integer_type_and_do_not_copy():
    """Node numbers come as 4-byte integers at scale: used as they are (no 8-byte copy of every pair's nodes)."""
    nodes = np.array([3, 1, 2], dtype=np.int32)
    assert neighbour_search.row_indices(nodes) is nodes
    assert neighbour_search.row_indices([3.0, 1.0]).dtype == np.int64
    x = np.eye(4, dtype=np.float32)
    np.testing.assert_allclose(neighbour_search.paired_cosines(x, nodes, x, np.array([3, 0, 2], np.int32)), [1, 0, 1])


def assert_same_graph_up_to_rounding(x, graph, reference, tolerance=1e-5):
    """Rank by rank the same similarities, each neighbour's similarity its true one, and the same neighbours but
    among those tied within float rounding (BLAS rounds a product by where it sits in a block: identical vectors
    compare at 0.999925 and 0.99992514 in two searches, and the row order of such ties follows those last bits)."""
    from auditor.encoding.embedding_store import to_float32

    (sims, ids), (ref_sims, ref_ids) = graph, reference
    assert np.allclose(sims, ref_sims, atol=tolerance)
    unit = to_float32(x)
    real = ids >= 0
    rows = np.broadcast_to(np.arange(len(ids))[:, None], ids.shape)
    true = np.einsum("ij,ij->i", unit[rows[real]], unit[ids[real]])
    assert np.allclose(true, sims[real], atol=tolerance)
    for row in range(len(ids)):
        kth = ref_sims[row, -1]
        clear = lambda s, i: set(i[s > kth + tolerance].tolist())
        assert clear(sims[row], ids[row]) == clear(ref_sims[row], ref_ids[row])
        assert len(set(ids[row][ids[row] >= 0].tolist())) == (ids[row] >= 0).sum()


@pytest.mark.parametrize("n_known, k, known_k", [(280, 11, 11), (150, 6, 11), (299, 11, 13), (4, 11, 11), (0, 5, 5)])
def test_a_known_graph_extended_is_the_full_search(n_known, k, known_k):
    """Only the new rows are searched, and a known row keeps its neighbours unless a new row is nearer: the graph is
    the full search's, identical vectors (exact ties) ordered by row as it orders them, padding where too few."""
    from auditor.encoding.embedding_store import to_float32

    rng = np.random.default_rng(n_known)
    x = normalise(rng.normal(size=(300, 16))).astype(np.float16)
    x[[10, 200, 290]] = x[50]  # ties across the known and the new rows
    x.flags.writeable = False
    known_rows = np.sort(rng.choice(300, n_known, replace=False))
    known_sims, known_ids = neighbour_search._exact_search(to_float32(x[known_rows]), to_float32(x[known_rows]), known_k)
    known_ids = np.where(known_ids >= 0, known_rows[np.maximum(known_ids, 0)], -1)  # rows of x
    sims, ids = neighbour_search.extend_exact_graph(x, known_rows, known_sims, known_ids, k)
    full_sims, full_ids = neighbour_search._exact_search(to_float32(x), to_float32(x), k)
    assert_same_graph_up_to_rounding(x, (sims, ids), (full_sims, full_ids))
    if n_known == 0:
        assert np.array_equal(ids, full_ids)
    with pytest.raises(ValueError, match="neighbours"):
        neighbour_search.extend_exact_graph(x, known_rows, known_sims[:, :2], known_ids, 3)


def test_a_graph_source_is_asked_before_a_search_and_told_after_one(monkeypatch):
    rng = np.random.default_rng(13)
    monkeypatch.setattr(neighbour_search, "_exact_graphs", {})
    monkeypatch.setattr(neighbour_search, "_graph_sources", {})
    x = normalise(rng.normal(size=(120, 8)))
    x.flags.writeable = False
    told = []

    class Source:
        graph = None

        def load(self, vectors, k):
            return None if self.graph is None else (self.graph[0][:, :k], self.graph[1][:, :k])

        def save(self, vectors, sims, ids):
            told.append(len(sims))
            self.graph = (sims.copy(), ids.copy())

    source = Source()
    neighbour_search.attach_graph_source(x, source)
    sims, ids = knn(x, 6)
    assert told == [120] and source.graph[1].shape == (120, neighbour_search.SELF_K)
    monkeypatch.setattr(neighbour_search, "_exact_graphs", {})  # another process: the source answers
    monkeypatch.setattr(neighbour_search, "_exact_search", lambda *a: pytest.fail("searched again"))
    again = knn(x.copy(), 6)  # the same values in another array
    assert np.array_equal(again[1], ids) and told == [120]


def test_the_hash_searchs_recall_up_to_ties_counts_another_code_at_the_same_distances():
    """Exact search keeps the lower codes among those tied at the cut, the index whichever it met first: the same
    distances, other codes. Strict recall counts that as a miss; up to ties it is found — a code at another
    distance, or a missing one, still is not."""
    from auditor.similarity.neighbours import _probe_recall

    truth = np.array([[0, 10, 2], [0, 11, 3], [0, 12, 3], [1, 20, 1], [1, 21, 4]])
    got = np.array([[0, 10, 2], [0, 11, 3], [0, 99, 3],  # probe 0: code 12 replaced by 99 at the same distance
                    [1, 20, 1], [1, 98, 5]])  # probe 1: code 21 replaced by one farther off
    strict, _, probes = _probe_recall(truth, got)
    tied, _, _ = _probe_recall(truth, got, up_to_ties=True)
    assert probes == 2
    assert strict == pytest.approx((2 / 3 + 1 / 2) / 2) and tied == pytest.approx((1 + 1 / 2) / 2)
    twice = np.array([[0, 10, 2], [0, 98, 3], [0, 99, 3]])  # two substitutes for two tied codes, one for none
    assert _probe_recall(truth[:3], twice, up_to_ties=True)[0] == pytest.approx(1.0)
    assert _probe_recall(truth[:3], twice[:2], up_to_ties=True)[0] == pytest.approx(2 / 3)
    assert _probe_recall(truth, got[:0], up_to_ties=True)[0] == 0.0


def test_paired_cosines_gather_a_recurring_row_once_with_the_same_values():
    """Pairs ordered by their first image repeat its row: gathered once per block, the cosines are bit for bit those
    of gathering every pair's rows, over several blocks and with rows that do not repeat."""
    from auditor.encoding.embedding_store import to_float32

    rng = np.random.default_rng(21)
    x = normalise(rng.normal(size=(500, 24))).astype(np.float16)
    first = np.sort(rng.integers(0, 40, 3000))  # ≈ 75 pairs a row: gathered once
    second = rng.integers(0, 500, 3000)  # mostly distinct: gathered per pair
    expected = np.einsum("ij,ij->i", to_float32(x[first]), to_float32(x[second]))
    got = neighbour_search.paired_cosines(x, first, x, second, block=256)
    assert got.dtype == np.float32 and np.array_equal(got, expected)


@pytest.mark.parametrize("sweep_tile_bytes, rows_y", [(None, 100), (250, 25)])
def test_local_order_groups_pairs_by_tile_sweeping_back_and_forth_and_keeps_each_tiles_order(sweep_tile_bytes, rows_y):
    """Pairs read tile by tile: a permutation; tiles of x in turn, tiles of y forward then backward (the last range
    read comes first again); within a tile the given order (the pairs' first images stay sorted). The swept tiles
    of y may be smaller than x's (what a tile holds at once: x's range and y's)."""
    rng = np.random.default_rng(3)
    first = np.sort(rng.integers(0, 400, 5000))
    second = rng.integers(0, 400, 5000)
    order = neighbour_search.local_order(first, second, 10, 10, tile_bytes=1000, min_pairs=1,
                                         sweep_tile_bytes=sweep_tile_bytes)  # x: 100 rows a tile
    assert np.array_equal(np.sort(order), np.arange(5000))
    tx, ty = first[order] // 100, second[order] // rows_y
    assert np.all(np.diff(tx) >= 0)
    assert len(np.unique(ty)) == 400 // rows_y
    for t in range(4):
        sweep = ty[tx == t]
        assert np.all(np.diff(sweep) >= 0) if t % 2 == 0 else np.all(np.diff(sweep) <= 0)
        for u in np.unique(sweep):
            within = order[(tx == t) & (ty == u)]
            assert np.all(np.diff(within) > 0)  # the given order kept
    assert neighbour_search.local_order(first, second, 10, 10, tile_bytes=1000, min_pairs=5001) is None  # few pairs
    assert neighbour_search.local_order(first, second, 10, 10, tile_bytes=10**6, min_pairs=1,
                                        sweep_tile_bytes=10**6) is None  # one tile
    many = neighbour_search.local_order(first * 100, second * 100, 10, 10, tile_bytes=100, min_pairs=1,
                                        sweep_tile_bytes=sweep_tile_bytes)  # ≈ 4 000² tiles or more: past 16-bit keys
    tx, ty = (first * 100)[many] // 10, (second * 100)[many] // 10
    assert np.all(np.diff(tx) >= 0) and np.array_equal(np.sort(many), np.arange(5000))


def test_paired_cosines_read_tile_by_tile_are_the_same_bits(monkeypatch):
    """Many pairs over a large matrix are computed in tile order (local_order) and put back in the given order: the
    same cosines, bit for bit, as in the given order — and the tiled path did run."""
    rng = np.random.default_rng(22)
    x = normalise(rng.normal(size=(3000, 32))).astype(np.float16)
    first = np.sort(rng.integers(0, 3000, 20000))
    second = rng.integers(0, 3000, 20000)
    plain = neighbour_search.paired_cosines(x, first, x, second, block=512)
    ordered = []
    real = neighbour_search.local_order
    monkeypatch.setattr(neighbour_search, "local_order",
                        lambda *a, **k: ordered.append(real(*a, tile_bytes=64 * 200, min_pairs=1,
                                                            sweep_tile_bytes=64 * 50)) or ordered[-1])
    tiled = neighbour_search.paired_cosines(x, first, x, second, block=512)
    assert ordered and ordered[0] is not None and not np.array_equal(ordered[0], np.arange(20000))
    assert np.array_equal(tiled.view(np.uint32), plain.view(np.uint32))


def test_asking_for_a_graph_of_a_shape_none_has_hashes_nothing(monkeypatch):
    """outliers asks about each class's rows (a writable copy, hashed at every ask): no kept graph of that shape, no
    hashing."""
    monkeypatch.setattr(neighbour_search, "_exact_graphs", {})
    x = normalise(np.random.default_rng(14).normal(size=(60, 8)))
    knn(x, 11)
    monkeypatch.setattr(neighbour_search, "_fingerprint", lambda a: pytest.fail("hashed"))
    assert not neighbour_search.has_exact_graph(x[:30].copy(), 11)


def test_the_approximate_search_reads_the_stored_rows_without_read_around(tmp_path, advised_arrays):
    """The re-ranking reads candidates' rows of the memory-mapped store at random: the search runs inside
    memory.random_access on the stored matrix (inside a memory limit, read-around pushed out the rows still needed)."""
    from auditor.similarity import neighbours

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 32)).astype(np.float16)
    x /= np.linalg.norm(x.astype(np.float32), axis=1, keepdims=True).astype(np.float16)
    np.save(tmp_path / "unit.npy", x)
    stored = np.load(tmp_path / "unit.npy", mmap_mode="r")
    advised = advised_arrays(neighbours)
    index = neighbours.ApproximateIndex(stored)
    sims, labels = index.search(stored[:50], 5)
    assert len(advised) == 1 and advised[0] is stored
    assert (labels[:, 0] == np.arange(50)).all()  # each query finds itself first


def test_an_approximate_search_of_other_queries_takes_the_refine_factor_asked_for(monkeypatch):
    """`knn(..., refine_factor=)` sets how many candidates are re-ranked exactly: asked for enough to re-rank every row,
    the approximate search returns the exact neighbours, where the factor tuned to the matrix does not."""
    monkeypatch.setattr(neighbour_search, "EXACT_LIMIT", 100)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 256)).astype(np.float32)  # no structure for PCA to keep: the HNSW candidates are poor
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:40] + 0.01
    truth = np.argsort(-(q @ x.T), axis=1)[:, :20]
    _sims, tuned = knn(x, 20, queries=q)
    _sims, thorough = knn(x, 20, queries=q, refine_factor=8)  # 160 candidates: every row
    np.testing.assert_array_equal(thorough, truth)
    assert not np.array_equal(tuned, truth)


def test_reverse_edges_complete_a_row_whose_search_missed_a_row_that_lists_it():
    """Row 1 lists row 0 at 0.9, above row 0's last neighbour (0.5), and row 0 does not list row 1: its search missed
    it, so row 1 joins row 0's list in its place (exact cosines: nothing computed). An edge below the target's last
    neighbour, or one the target already lists, changes nothing."""
    sims = np.array([[1.0, 0.6, 0.5], [1.0, 0.9, 0.2], [1.0, 0.3, 0.1], [1.0, 0.95, 0.4]], dtype=np.float32)
    labels = np.array([[0, 3, 2], [1, 0, 2], [2, 3, 0], [3, 1, 0]])
    # row 3 lists row 1 at 0.95 (row 1's last is 0.2, row 1 does not list 3: a miss); row 2 lists 3 at 0.3, below
    # row 3's last (0.4); row 3 lists 0 at 0.4 below row 0's last 0.5; row 1 lists 2 at 0.2, above row 2's last 0.1,
    # and row 2 does not list 1: a miss too.
    given_sims, given_labels = sims.copy(), labels.copy()
    out_sims, out_labels, missed = neighbour_search.take_reverse_edges(sims, labels)
    assert missed.tolist() == [1, 1, 1, 0]
    assert out_labels[0].tolist() == [0, 1, 3] and out_sims[0].tolist() == pytest.approx([1.0, 0.9, 0.6])
    assert out_labels[1].tolist() == [1, 3, 0] and out_sims[1].tolist() == pytest.approx([1.0, 0.95, 0.9])
    assert out_labels[2].tolist() == [2, 3, 1] and out_sims[2].tolist() == pytest.approx([1.0, 0.3, 0.2])
    assert np.array_equal(out_labels[3], labels[3])
    assert np.array_equal(sims, given_sims) and np.array_equal(labels, given_labels)  # the input is not changed


def test_merged_neighbour_lists_keep_each_row_once_nearest_first_padded():
    a_sims = np.array([[0.9, 0.5, -1.0], [0.8, 0.7, 0.6]], dtype=np.float32)
    a_labels = np.array([[4, 2, -1], [1, 2, 3]])
    b_sims = np.array([[0.9, 0.7, 0.1], [0.95, 0.6, -1.0]], dtype=np.float32)
    b_labels = np.array([[4, 5, 6], [7, 3, -1]])
    sims, labels = neighbour_search.merge_neighbour_lists(a_sims, a_labels, b_sims, b_labels, 4)
    assert labels.tolist() == [[4, 5, 2, 6], [7, 1, 2, 3]]
    np.testing.assert_allclose(sims, [[0.9, 0.7, 0.5, 0.1], [0.95, 0.8, 0.7, 0.6]], rtol=1e-6)
    sims, labels = neighbour_search.merge_neighbour_lists(a_sims[:1, :2], a_labels[:1, :2], a_sims[:1, :1],
                                                          a_labels[:1, :1], 3)
    assert labels.tolist() == [[4, 2, -1]]
    np.testing.assert_allclose(sims, [[0.9, 0.5, -1.0]], rtol=1e-6)


def test_suspect_rows_missed_a_row_sit_far_outside_their_neighbours_crowd_or_found_too_few():
    spread = neighbour_search.SUSPECT_SPREAD
    last_of_crowd = 0.99  # 1 − 0.01
    sims = np.array([[1.0, 0.995, last_of_crowd],  # in the crowd
                     [1.0, 0.9, 1 - 0.011 * spread],  # just beyond the spread: its neighbours are crowded
                     [1.0, 0.9, 1 - 0.009 * spread],  # just within it
                     [1.0, 0.99, 0.98],  # missed a row that lists it
                     [1.0, -1.0, -1.0]], dtype=np.float32)  # found too few
    labels = np.array([[0, 1, 2], [1, 0, 0], [2, 0, 0], [3, 0, 1], [4, -1, -1]])
    missed = np.array([0, 0, 0, 2, 0])
    assert neighbour_search.suspect_rows(sims, labels, missed).tolist() == [False, True, False, True, True]


def tight_clouds(rng: np.random.Generator, n: int, dim: int = 48, centres: int = 100) -> np.ndarray:
    """n rows in `centres` clouds of near-copies (the 10⁶-vector bench's clouds, small)."""
    c = rng.normal(size=(centres, dim))
    return normalise(c[rng.integers(0, centres, n)] + 0.05 * rng.normal(size=(n, dim))).astype(np.float16)


@pytest.mark.slow  # seconds
def test_the_shared_graph_re_searches_its_failed_rows_and_reports_the_graph_it_returns(approximate, monkeypatch):
    """A sparse HNSW graph (4 links a row) over tight clouds of near-copies: the narrow walk misses the cloud of many
    rows (background error ≈ 10 over every row). The shared graph's rows whose search failed are completed by their
    reverse edges and searched again with the widest walk, so the graph returned finds more true neighbours and its
    backgrounds far better than the narrow search of every row; the quality reported is measured on that graph."""
    monkeypatch.setattr(neighbour_search, "HNSW_M", 4)
    monkeypatch.setattr(neighbour_search, "TARGET_RECALL", 0.0)  # no refine step: the graph's steps must do it
    x = tight_clouds(np.random.default_rng(1), 3000)
    sims, labels = knn(x, 11)
    index = neighbour_search._index_for(x)
    narrow_sims, narrow_labels = index.search(x, 11, ef_search=neighbour_search.HNSW_EF_SEARCH)
    exact = np.einsum("ij,ikj->ik", x.astype(np.float32), x[labels].astype(np.float32))
    np.testing.assert_allclose(sims, exact, atol=1e-5)  # still exact cosines, best first, each row once
    assert (np.diff(sims, axis=1) <= 1e-6).all()
    assert all(len(set(row)) == len(row) for row in labels.tolist())
    true_sims, truth = neighbour_search.drop_self(*brute_knn(x, x, 11), 10)
    found_sims, found = neighbour_search.drop_self(sims, labels, 10)
    narrow_found_sims, narrow_found = neighbour_search.drop_self(narrow_sims, narrow_labels, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)])
    narrow_recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, narrow_found)])
    assert recall > narrow_recall + 0.03  # measured 0.944 against 0.888
    error = neighbour_search.background_error(true_sims[:, -1], found_sims[:, -1])
    narrow_error = neighbour_search.background_error(true_sims[:, -1], narrow_found_sims[:, -1])
    assert error < narrow_error / 10  # measured 0.010 against 10.4
    quality = neighbour_search.search_quality(x, 10)
    steps = quality.parameters["self_graph"]
    assert steps["rows_re_searched"] > 0 and steps["re_search_ef_search"] == neighbour_search.MAX_EF_SEARCH
    assert steps["ef_search"] == neighbour_search.HNSW_EF_SEARCH and steps["rows_completed_by_reverse_edges"] > 0
    assert abs(quality.recall - recall) < 0.05
    assert quality.parameters["background_error"] < quality.parameters["tuned_search"]["background_error"]


def test_where_the_narrow_walk_meets_the_target_no_row_is_searched_again(approximate, monkeypatch):
    """The same data with a background target the narrow walk meets: the tuning keeps efSearch 32, and the graph takes
    its reverse edges (no cosine computed) but searches no row again."""
    monkeypatch.setattr(neighbour_search, "HNSW_M", 4)
    monkeypatch.setattr(neighbour_search, "TARGET_RECALL", 0.0)
    monkeypatch.setattr(neighbour_search, "BACKGROUND_ERROR_TARGET", 1e3)
    x = tight_clouds(np.random.default_rng(1), 3000)
    knn(x, 11)
    steps = neighbour_search.search_quality(x, 10).parameters["self_graph"]
    assert steps["ef_search"] == neighbour_search.HNSW_EF_SEARCH and steps["rows_re_searched"] == 0
    assert steps["rows_completed_by_reverse_edges"] > 0
