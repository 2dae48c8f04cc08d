"""Clustered duplicate search (k-means on a sample, exact search in each vector's nearest clusters) finds
the pairs exact search finds, and its shards (the pieces a cluster would run apart) find exactly what the
one-machine clustered search finds. Search logic only: synthetic vectors with clusters and planted
near-duplicates stand in for embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.similarity.clustered import (clustered_cosine_pairs, fit_clusters, merge_shard_pairs, shard_pairs,
                                          shards)
from auditor.similarity.neighbours import cosine_pairs, normalise

MIN_COSINE = 0.9


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, set[tuple[int, int]]]:
    """6 000 vectors around 40 topics in 64 dimensions, and 300 planted near-duplicates (cosine ≈ 0.95)."""
    rng = np.random.default_rng(7)
    topics = normalise(rng.normal(size=(40, 64)))
    base = normalise(topics[rng.integers(0, 40, 5700)] + rng.normal(scale=0.12, size=(5700, 64)))
    originals = rng.choice(5700, 300, replace=False)
    copies = normalise(base[originals] + rng.normal(scale=0.04, size=(300, 64)))
    planted = {(int(i), 5700 + n) for n, i in enumerate(originals)}
    return np.vstack([base, copies]).astype(np.float32), planted


def as_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return {(int(i), int(j)) for i, j in pairs}


def test_exact_search_finds_every_planted_pair(vectors):
    x, planted = vectors
    assert planted <= as_set(cosine_pairs(x, MIN_COSINE)[0])  # the reference below is meaningful


@pytest.mark.parametrize("probes, min_recall", [(1, 0.85), (4, 0.99)])
def test_clustered_search_recalls_the_exact_pairs(vectors, probes, min_recall):
    x, _ = vectors
    exact = as_set(cosine_pairs(x, MIN_COSINE)[0])
    clustering = fit_clusters(x, clusters=77, probes=probes, sample=3000)
    found, sims = clustered_cosine_pairs(x, MIN_COSINE, clustering)
    assert as_set(found) <= exact  # never a pair exact search would not report
    assert (sims >= MIN_COSINE - 1e-6).all()
    recall = len(as_set(found)) / len(exact)
    assert recall >= min_recall, recall


def test_more_probes_never_find_fewer_pairs(vectors):
    x, _ = vectors
    counts = [len(clustered_cosine_pairs(x, MIN_COSINE, fit_clusters(x, clusters=77, probes=p, sample=3000))[0])
              for p in (1, 2, 4, 8)]
    assert counts == sorted(counts) and counts[0] < counts[-1]


def test_shards_find_exactly_the_pairs_of_the_one_machine_search(vectors):
    x, _ = vectors
    clustering = fit_clusters(x, clusters=77, probes=3, sample=3000)
    pieces = shards(x, clustering)
    assert sorted(np.concatenate([s.stored for s in pieces]).tolist()) == list(range(len(x)))  # each stored once
    # each shard is small: its queries are about probes / clusters of the data
    assert max(len(s.queries) for s in pieces) < len(x) / 5
    merged, merged_sims = merge_shard_pairs([shard_pairs(x, shard, MIN_COSINE) for shard in pieces])
    single, single_sims = clustered_cosine_pairs(x, MIN_COSINE, clustering)
    assert as_set(merged) == as_set(single) and len(merged) == len(as_set(merged))
    np.testing.assert_allclose(np.sort(merged_sims), np.sort(single_sims), atol=1e-5)


def test_tiny_inputs():
    assert clustered_cosine_pairs(np.zeros((1, 8), np.float32), 0.9)[0].shape == (0, 2)
    x = normalise(np.array([[1, 0], [1, 0.01], [0, 1]], np.float32))
    assert as_set(clustered_cosine_pairs(x, 0.99)[0]) == {(0, 1)}
