"""Neighbour search with FAISS: Hamming search over 64-bit hashes, cosine search over embeddings.

One seam for scale: below `EXACT_LIMIT` vectors the search is exact (flat indexes); above it,
an HNSW graph answers k-NN queries approximately, so a 1M-image audit stays tractable. Callers
only see pairs (i, j, score) with i < j.
"""

from __future__ import annotations

import numpy as np

EXACT_LIMIT = 60_000


def hex_to_codes(hex_hashes: list[str]) -> np.ndarray:
    """16-hex-digit (64-bit) hashes → uint8 array (N, 8), the layout FAISS binary indexes want."""
    return np.array([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for h in hex_hashes], dtype=np.uint8).reshape(
        len(hex_hashes), 8
    )


def hamming_pairs(codes: np.ndarray, max_distance: int, queries: np.ndarray | None = None):
    """Pairs within `max_distance` bits. Without `queries`, pairs inside `codes` (i < j); with them,
    (query i, code j) pairs, i.e. queries are, say, the mirrored hashes of the same images."""
    import faiss

    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(np.ascontiguousarray(codes))
    probe = codes if queries is None else queries
    # range_search keeps distances strictly below the radius.
    lims, distances, labels = index.range_search(np.ascontiguousarray(probe), max_distance + 1)
    rows = np.repeat(np.arange(len(probe)), np.diff(lims).astype(np.int64))
    pairs = np.stack([rows, labels.astype(np.int64), distances.astype(np.int64)], axis=1)
    if queries is None:
        pairs = pairs[pairs[:, 0] < pairs[:, 1]]
    return pairs


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def cosine_pairs(unit_vectors: np.ndarray, min_cosine: float, k_when_approximate: int = 32):
    """Pairs (i < j) with cosine ≥ min_cosine; `unit_vectors` must be L2-normalised float32."""
    import faiss

    x = np.ascontiguousarray(unit_vectors, dtype=np.float32)
    n = len(x)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32)
    if n <= EXACT_LIMIT:
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        lims, sims, labels = index.range_search(x, float(min_cosine))
        rows = np.repeat(np.arange(n), np.diff(lims).astype(np.int64))
        keep = rows < labels
        return np.stack([rows[keep], labels[keep].astype(np.int64)], axis=1), sims[keep]
    sims, labels = knn(x, k_when_approximate)
    rows = np.repeat(np.arange(n), sims.shape[1])
    sims, labels = sims.ravel(), labels.ravel()
    keep = (labels >= 0) & (sims >= min_cosine) & (rows != labels)
    pairs = np.sort(np.stack([rows[keep], labels[keep]], axis=1), axis=1)
    pairs, first = np.unique(pairs, axis=0, return_index=True)
    return pairs, sims[keep][first]


def knn(unit_vectors: np.ndarray, k: int, queries: np.ndarray | None = None):
    """k nearest neighbours by cosine: (similarities, indices), each (Q, k); exact below EXACT_LIMIT."""
    import faiss

    x = np.ascontiguousarray(unit_vectors, dtype=np.float32)
    q = x if queries is None else np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, len(x))
    if len(x) <= EXACT_LIMIT:
        index = faiss.IndexFlatIP(x.shape[1])
    else:
        index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = max(64, 2 * k)
    index.add(x)
    sims, labels = index.search(q, k)
    return sims, labels


def drop_self(sims: np.ndarray, neighbours: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """From a self-query of k + 1 neighbours, the first k that are not the query itself (nor missing, -1).
    The query is usually first, but not always: identical vectors tie, and approximate search may miss it."""
    rows = np.arange(len(neighbours))[:, None]
    unwanted = (neighbours == rows) | (neighbours < 0)
    order = np.argsort(unwanted, axis=1, kind="stable")  # wanted columns first, in their original order
    return np.take_along_axis(sims, order, axis=1)[:, :k], np.take_along_axis(neighbours, order, axis=1)[:, :k]
