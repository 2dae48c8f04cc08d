"""Duplicate search past what one machine's exact search can hold: clustered search, as SemDeDup does.

k-means on a sample of the vectors gives C centroids (FAISS' k-means); every vector is stored in the list
of its nearest centroid; each vector is then compared *exactly* with the vectors stored in the lists of its
`probes` nearest centroids. A pair of near-duplicates (cosine ≥ 0.9, say) almost always shares a nearest
centroid, so few probes find nearly all of them, while each comparison touches about probes / C of the data.

On one machine this is FAISS' IndexIVFFlat with `nprobe` (`clustered_cosine_pairs`). Across machines the
same search splits into independent shards (`shards` + `shard_pairs`): shard c holds list c and the vectors
whose probes include c; a Ray map over shards (or any batch system) runs `shard_pairs` where the shard's
vectors are, and only the pairs (a few per image) come back to the driver. Every pair that the one-machine
search finds, some shard finds, and no pair is reported twice (`test_clustered_search.py` checks both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Clustering:
    centroids: np.ndarray  # (C, dim) float32, L2-normalised
    probes: int  # how many nearest centroids' lists each vector is compared with


def default_clusters(count: int) -> int:
    """About √n lists (FAISS' own rule of thumb for IVF), at least 1; each list then holds about √n vectors."""
    return max(1, int(round(np.sqrt(count))))


def fit_clusters(unit_vectors: np.ndarray, clusters: int | None = None, probes: int = 4, sample: int = 100_000,
                 seed: int = 0) -> Clustering:
    """k-means (spherical, FAISS) on a random sample of at most `sample` vectors."""
    import faiss

    x = np.ascontiguousarray(unit_vectors, dtype=np.float32)
    clusters = min(clusters or default_clusters(len(x)), len(x))
    rng = np.random.default_rng(seed)
    picked = x if len(x) <= sample else x[np.sort(rng.choice(len(x), sample, replace=False))]
    kmeans = faiss.Kmeans(x.shape[1], clusters, niter=20, spherical=True, seed=seed,
                          min_points_per_centroid=1, max_points_per_centroid=max(256, len(picked) // clusters + 1))
    kmeans.train(picked)
    return Clustering(centroids=np.ascontiguousarray(kmeans.centroids, dtype=np.float32), probes=min(probes, clusters))


def nearest_centroids(unit_vectors: np.ndarray, clustering: Clustering, count: int) -> np.ndarray:
    """(N, count) indices of each vector's nearest centroids, nearest first."""
    import faiss

    index = faiss.IndexFlatIP(clustering.centroids.shape[1])
    index.add(clustering.centroids)
    return index.search(np.ascontiguousarray(unit_vectors, dtype=np.float32), count)[1]


def clustered_cosine_pairs(unit_vectors: np.ndarray, min_cosine: float, clustering: Clustering | None = None):
    """Pairs (i < j) with cosine ≥ min_cosine, by clustered search on one machine (FAISS IndexIVFFlat):
    the same contract as neighbours.cosine_pairs, with recall below 1 where a pair's vectors fall in lists
    that neither one probes."""
    import faiss

    x = np.ascontiguousarray(unit_vectors, dtype=np.float32)
    if len(x) < 2:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32)
    clustering = clustering or fit_clusters(x)
    quantizer = faiss.IndexFlatIP(x.shape[1])
    quantizer.add(clustering.centroids)
    index = faiss.IndexIVFFlat(quantizer, x.shape[1], len(clustering.centroids), faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True  # the lists are the given centroids' (trained on a sample by fit_clusters)
    index.add(x)
    index.nprobe = clustering.probes
    lims, sims, labels = index.range_search(x, float(min_cosine))
    return _symmetric_pairs(np.repeat(np.arange(len(x)), np.diff(lims).astype(np.int64)), labels.astype(np.int64), sims)


@dataclass(frozen=True)
class Shard:
    cluster: int
    stored: np.ndarray  # indices of the vectors in this cluster's list (nearest centroid = cluster)
    queries: np.ndarray  # indices of the vectors whose `probes` nearest centroids include this cluster


def shards(unit_vectors: np.ndarray, clustering: Clustering) -> list[Shard]:
    """The clustered search as independent pieces of work, one per non-empty list. Assigning vectors to
    centroids is itself a map over the vectors (it needs only the centroids), so it can run where they are."""
    nearest = nearest_centroids(unit_vectors, clustering, clustering.probes)  # (N, probes), nearest first
    count = len(clustering.centroids)
    stored_order = np.argsort(nearest[:, 0], kind="stable")
    stored_bounds = np.searchsorted(nearest[stored_order, 0], np.arange(count + 1))
    probed = nearest.ravel()
    owners = np.repeat(np.arange(len(nearest)), nearest.shape[1])
    probed_order = np.argsort(probed, kind="stable")
    probed_bounds = np.searchsorted(probed[probed_order], np.arange(count + 1))
    out = []
    for cluster in range(count):
        stored = stored_order[stored_bounds[cluster]:stored_bounds[cluster + 1]]
        if len(stored):
            queries = np.sort(owners[probed_order[probed_bounds[cluster]:probed_bounds[cluster + 1]]])
            out.append(Shard(cluster, stored, queries))
    return out


def shard_pairs(unit_vectors: np.ndarray, shard: Shard, min_cosine: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact search of one shard: its queries against its stored vectors (FAISS flat range search).
    `unit_vectors` need only hold the shard's rows (indices are global); pairs (i < j) come back."""
    import faiss

    stored = np.ascontiguousarray(unit_vectors[shard.stored], dtype=np.float32)
    index = faiss.IndexFlatIP(stored.shape[1])
    index.add(stored)
    lims, sims, labels = index.range_search(np.ascontiguousarray(unit_vectors[shard.queries], dtype=np.float32),
                                            float(min_cosine))
    rows = shard.queries[np.repeat(np.arange(len(shard.queries)), np.diff(lims).astype(np.int64))]
    return _symmetric_pairs(rows, shard.stored[labels], sims, deduplicate=False)


def merge_shard_pairs(results: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of all shards, each once (a pair is found from both ends when both probe each other's list)."""
    if not results:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32)
    pairs = np.concatenate([p for p, _ in results])
    sims = np.concatenate([s for _, s in results])
    if not len(pairs):
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32)
    pairs, first = np.unique(pairs, axis=0, return_index=True)
    return pairs, sims[first]


def _symmetric_pairs(rows: np.ndarray, labels: np.ndarray, sims: np.ndarray, deduplicate: bool = True):
    """(i, j) found from either end → pairs with i < j, each once (`deduplicate`), self-matches dropped."""
    keep = rows != labels
    pairs = np.sort(np.stack([rows[keep], labels[keep]], axis=1), axis=1).astype(np.int64)
    sims = sims[keep].astype(np.float32)
    if deduplicate and len(pairs):
        pairs, first = np.unique(pairs, axis=0, return_index=True)
        sims = sims[first]
    return pairs, sims
