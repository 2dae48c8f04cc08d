"""Candidate pairs and the evidence on each, the same way for dataset images and for calibration copies.

Every query image (a dataset image, or a transformed copy made for calibration) is compared with a few
dataset images only, O(n·k) in all:
  - its `CANDIDATES` nearest neighbours by embedding cosine (FAISS), and
  - the images whose pHash and dHash are within the user's thresholds under any of the 8 rotations and
    mirrorings of the query (FAISS binary index), so rotated and mirrored copies are found too.

On each candidate pair three numbers are measured:
  - `cosine` of the embeddings;
  - `scaled`: the cosine relative to how similar the two images' neighbourhoods are,
    (cos − b) / (1 − b) with b the mean of both images' `BACKGROUND_RANK`-th neighbour cosine. A pair of
    silver cars in a crowd of silver cars has a high cosine but a low scaled cosine; a copy stands out
    from its partner's neighbourhood wherever it is;
  - `correlation`: the Pearson correlation of the two 32×32 grey thumbnails after the best small shift
    and zoom (pixels.aligned_correlation), under mirroring, and under all 8 rotations/mirrorings for the
    nearest neighbour and for hash matches found under a rotation.

Using one function for dataset images and for copies keeps the copies' evidence, and so the recall and
false-match rates measured on them, comparable with the dataset's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from auditor.similarity import pixels as px

CANDIDATES = 5  # nearest neighbours per image examined as candidate duplicates
BACKGROUND_RANK = 10  # the neighbour whose cosine describes how crowded an image's neighbourhood is


@dataclass
class Dataset:
    """What the search needs about the dataset's images (node order)."""

    unit: np.ndarray | None  # (n, d) unit embeddings, or None: no embedding tier
    thumbs: np.ndarray  # (n, 32, 32) uint8 grey thumbnails
    phash: np.ndarray  # (n, 8) uint8 pHash codes of the thumbnails (identity)
    dhash: np.ndarray  # (n, 8) uint8
    background: np.ndarray  # (n,) cosine of each image's BACKGROUND_RANK-th neighbour (0 without embeddings)


@dataclass
class Pairs:
    """Candidate pairs (query q, dataset image j) and their evidence; parallel arrays."""

    query: np.ndarray
    target: np.ndarray
    rank: np.ndarray  # j's rank among q's embedding neighbours (0 = nearest), -1: found by hash only
    cosine: np.ndarray
    scaled: np.ndarray
    correlation: np.ndarray
    variant: np.ndarray  # dihedral variant of the query that correlated best (0 = as is, 4 = mirrored)
    hash_match: np.ndarray  # bool: pHash and dHash within the thresholds under some variant
    phash_distance: np.ndarray
    dhash_distance: np.ndarray

    def __len__(self) -> int:
        return len(self.query)

    def subset(self, mask: np.ndarray) -> "Pairs":
        return Pairs(**{name: getattr(self, name)[mask] for name in self.__dataclass_fields__})


def pixel_descriptors(thumbs: np.ndarray) -> np.ndarray:
    """Standardised 16×16 grey thumbnails as unit vectors: candidates by pixel likeness (no embeddings)."""
    x = np.asarray(thumbs, dtype=np.float32)
    x = x.reshape(len(x), 16, 2, 16, 2).mean(axis=(2, 4)).reshape(len(x), 256)
    x = x - x.mean(axis=1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def dihedral_codes(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pHash and dHash codes of every thumbnail under the 8 variants: two (8, n, 8) uint8 arrays."""
    phash = np.stack([px.phash_codes(np.ascontiguousarray(px.dihedral(thumbs, v))) for v in range(8)])
    dhash = np.stack([px.dhash_codes(np.ascontiguousarray(px.dihedral(thumbs, v))) for v in range(8)])
    return phash, dhash


def make_dataset(unit: np.ndarray | None, thumbs: np.ndarray) -> Dataset:
    from auditor.similarity.neighbours import knn

    thumbs = np.ascontiguousarray(thumbs, dtype=np.uint8)
    phash, dhash = px.phash_codes(thumbs), px.dhash_codes(thumbs)
    background = np.zeros(len(thumbs), dtype=np.float32)
    if unit is not None and len(unit) >= 2:
        sims, labels = knn(unit, min(len(unit), BACKGROUND_RANK + 1))
        background = np.array([_background_of(s, l, row) for row, (s, l) in enumerate(zip(sims, labels))],
                              dtype=np.float32)
    return Dataset(unit=unit, thumbs=thumbs, phash=phash, dhash=dhash, background=background)


def _background_of(sims: np.ndarray, labels: np.ndarray, exclude: int | None) -> float:
    others = sims[(labels >= 0) & (labels != (-2 if exclude is None else exclude))]
    if not len(others):
        return 0.0
    return float(others[min(BACKGROUND_RANK, len(others)) - 1])


def scaled_cosine(cosine: np.ndarray, background_a: np.ndarray, background_b: np.ndarray) -> np.ndarray:
    b = np.clip((background_a + background_b) / 2.0, -1.0, 0.999)
    return (cosine - b) / (1.0 - b)


def search(data: Dataset, query_unit: np.ndarray | None, query_thumbs: np.ndarray, max_phash: int, max_dhash: int,
           self_nodes: np.ndarray | None = None, candidates: int = CANDIDATES) -> Pairs:
    """Candidate pairs of each query with dataset images, with their evidence.

    `self_nodes[q]`: the dataset node that query q *is* (never its own candidate), or -1; None when the
    queries are not dataset images (calibration copies)."""
    from auditor.similarity.neighbours import knn

    nq = len(query_thumbs)
    query_thumbs = np.ascontiguousarray(query_thumbs, dtype=np.uint8)
    symmetric = self_nodes is not None  # queries are the dataset's own images: keep each pair once
    self_nodes = np.full(nq, -1, dtype=np.int64) if self_nodes is None else np.asarray(self_nodes, dtype=np.int64)
    found: dict[tuple[int, int], list] = {}  # (q, j) → [rank, hash variant or -1, p_dist, d_dist]
    q_background = np.zeros(nq, dtype=np.float32)
    # Without embeddings, candidates come from the thumbnails themselves (standardised 16×16 grey).
    space, query_space = ((data.unit, query_unit) if data.unit is not None and query_unit is not None
                          else (pixel_descriptors(data.thumbs), pixel_descriptors(query_thumbs)))
    if len(space) >= 1 and nq:
        k = min(len(space), max(candidates, BACKGROUND_RANK) + 1)
        sims, labels = knn(space, k, queries=query_space)
        for q in range(nq):
            keep = (labels[q] >= 0) & (labels[q] != self_nodes[q])
            row_labels = labels[q][keep]
            q_background[q] = _background_of(sims[q][keep], row_labels, None)
            for rank, j in enumerate(row_labels[:candidates]):
                reverse = found.get((int(j), q)) if symmetric else None
                if reverse is not None:  # dataset pairs once each: the pair is already a candidate of j's
                    reverse[0] = min(reverse[0], rank)
                else:
                    found[(q, int(j))] = [rank, -1, 99, 99]
    # Hash candidates under each of the 8 variants of the query.
    q_phash, q_dhash = dihedral_codes(query_thumbs) if nq else (np.zeros((8, 0, 8), np.uint8),) * 2
    for variant in range(8):
        for q, j, p_dist in _hamming_matches(data.phash, q_phash[variant], max_phash):
            if j == self_nodes[q]:
                continue
            d_dist = int(np.unpackbits(np.bitwise_xor(q_dhash[variant][q], data.dhash[j])).sum())
            if d_dist > max_dhash:
                continue
            if symmetric and (int(j), int(q)) in found and (int(q), int(j)) not in found:
                continue
            entry = found.setdefault((int(q), int(j)), [-1, -1, 99, 99])
            if p_dist + d_dist < entry[2] + entry[3]:
                entry[1:] = [variant, int(p_dist), d_dist]
    if not found:
        return _empty_pairs()
    keys = np.array(list(found.keys()), dtype=np.int64)
    info = np.array(list(found.values()), dtype=np.int64)
    query, target, rank, hash_variant = keys[:, 0], keys[:, 1], info[:, 0], info[:, 1]
    cosine = np.zeros(len(keys), dtype=np.float32)
    scaled = np.zeros(len(keys), dtype=np.float32)
    if data.unit is not None and query_unit is not None:
        cosine = np.einsum("ij,ij->i", query_unit[query], data.unit[target]).astype(np.float32)
        scaled = scaled_cosine(cosine, q_background[query], data.background[target]).astype(np.float32)
    correlation, variant = _best_correlation(query_thumbs[query], data.thumbs[target], rank, hash_variant)
    return Pairs(query=query, target=target, rank=rank, cosine=cosine, scaled=scaled, correlation=correlation,
                 variant=variant, hash_match=hash_variant >= 0, phash_distance=info[:, 2], dhash_distance=info[:, 3])


def _best_correlation(a: np.ndarray, b: np.ndarray, rank: np.ndarray, hash_variant: np.ndarray):
    """Aligned correlation under the variants worth trying: as is and mirrored for every pair; all 8 for the
    nearest neighbour (a rotated copy is often still the nearest) and the variant a hash match was found under."""
    best = px.aligned_correlation(a, b)
    variant = np.zeros(len(a), dtype=np.int64)
    for v in range(1, 8):
        wanted = (hash_variant == v) | (rank == 0) | (v == 4)
        if not wanted.any():
            continue
        rows = np.flatnonzero(wanted)
        turned = np.ascontiguousarray(px.dihedral(a[rows], v))
        corr = px.aligned_correlation(turned, b[rows])
        better = corr > best[rows]
        best[rows[better]] = corr[better]
        variant[rows[better]] = v
    return best, variant


def _hamming_matches(codes: np.ndarray, queries: np.ndarray, max_distance: int) -> np.ndarray:
    """(query, code index, distance) rows within max_distance bits."""
    import faiss

    if not len(codes) or not len(queries):
        return np.zeros((0, 3), dtype=np.int64)
    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(np.ascontiguousarray(codes))
    lims, distances, labels = index.range_search(np.ascontiguousarray(queries), max_distance + 1)
    rows = np.repeat(np.arange(len(queries)), np.diff(lims).astype(np.int64))
    return np.stack([rows, labels.astype(np.int64), distances.astype(np.int64)], axis=1)


def _empty_pairs() -> Pairs:
    e_i = np.zeros(0, dtype=np.int64)
    e_f = np.zeros(0, dtype=np.float32)
    return Pairs(query=e_i, target=e_i, rank=e_i, cosine=e_f, scaled=e_f, correlation=e_f, variant=e_i,
                 hash_match=np.zeros(0, dtype=bool), phash_distance=e_i, dhash_distance=e_i)


def unordered(pairs: Pairs) -> Pairs:
    """Dataset-vs-dataset pairs once each (a < b), keeping the stronger evidence of the two directions."""
    if not len(pairs):
        return pairs
    a = np.minimum(pairs.query, pairs.target)
    b = np.maximum(pairs.query, pairs.target)
    strength = pairs.correlation + pairs.scaled
    order = np.lexsort((-strength, b, a))
    keys = np.stack([a[order], b[order]], axis=1)
    first = np.ones(len(order), dtype=bool)
    first[1:] = np.any(keys[1:] != keys[:-1], axis=1)
    chosen = order[first]
    out = pairs.subset(chosen)
    out.query, out.target = a[chosen], b[chosen]
    return out
