"""Neighbour search with FAISS: Hamming search over 64-bit hashes, cosine search over embeddings.

One seam for scale. Callers see the same functions at any size; what runs underneath changes:

* cosine k-NN (`knn`, `cosine_pairs`): exact (flat inner product) up to `EXACT_LIMIT` vectors. Above it,
  an approximate index: PCA to `REDUCED_DIMS` dimensions (fitted on a seeded sample), an HNSW graph
  (`HNSW_M` links, `HNSW_EF_SEARCH` candidates kept while searching), `REFINE_FACTOR`× the asked-for
  neighbours fetched, and their cosines recomputed exactly on the full vectors, so every similarity
  returned is exact and only the choice of neighbours is approximate. Its recall@k against exact search is
  measured in every run on a seeded sample of queries (`SearchQuality`), and reported by the checks that
  use it, with the background error (how far below exact search the k-th neighbour's cosine is found, relative to
  1 − it: what the duplicate decision's scaled cosine divides by). Above `BACKGROUND_ERROR_TARGET` the walk widens
  (efSearch doubles), below `TARGET_RECALL` the refine factor is raised (`ApproximateIndex.tune`). The shared
  self-query graph walks narrow and searches again, with the widest walk, the rows whose search the graph itself shows
  failed (`ApproximateIndex.search_self`); it is measured on the same sample, and that measurement is the one
  reported. The graph is built in parallel, so which neighbours are found can differ slightly between runs.
* Hamming range search (`hamming_pairs`): exact flat search up to `HAMMING_EXACT_LIMIT` codes; above,
  multi-index hashing planned by cost (`_multi_hash_plan`): two codes within `radius` bits differ in at most
  ⌊radius / tables⌋ bits of one of the tables' bit strings (pigeonhole), so probing every key that close finds
  them all — complete by construction, and still measured against exact search on a sample, every run. Its
  tables are direct-address arrays searched with numpy (`multi_index.DirectMultiIndex`; FAISS's
  IndexBinaryMultiHash, ≈ 6× slower on 64-bit codes, for other widths).
* the duplicate candidates' hash search (`hamming_nearest`): each probe's k nearest codes within the radius;
  complete (the tables above, each block of probes ranked in one sort) below `HAMMING_APPROXIMATE_FROM` codes; from
  it on, the multi-index tables planned for one bit less than the radius (complete within radius − 1 bits) where a
  seeded sample searched completely first says they find `TARGET_RECALL` of its matches, else the complete search:
  at 10⁶ real 32 px crops' codes 7–8× cheaper than complete (two runs), 0.979 of its rows. The recall on that sample (a mean over
  probes with a match) and the share of all its matches found are reported.

Vectors may be float16 (the embedding store's memory-mapped rows) or float32; they are converted block by
block, never whole. The index built for a matrix is kept (keyed by the array object), so several checks
searching the same matrix build it once; self-queries are answered from one shared k-NN graph.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from auditor.memory import random_access

EXACT_LIMIT = 20_000  # vectors; above this, approximate k-NN (exact all-pairs costs n² · d)
# Codes; above this, multi-index hashing. Its result is the same set (complete by pigeonhole), returned in the flat
# search's order, and it costs less from a few thousand codes on; the flat search grows as n². The dihedral pHash
# codes of real 32 px crops (8 probes an image, each probe's 16 nearest within 6 bits, best of 3, wall): 1 000
# codes 6 ms either way, 3 000 39 → 15 ms, 10 000 238 → 116 ms, 20 000 0.95 → 0.28 s, 60 000 4.9 s for FAISS's
# multi-index search → 1.0 s on the direct tables (`multi_index`); with FAISS's, the limit was 20 000.
HAMMING_EXACT_LIMIT = 2_000
REDUCED_DIMS = 64  # PCA dimensions the HNSW graph is built and searched in; exact re-ranking restores the cosines
HNSW_M = 16  # graph degree (links per vector per layer; 32 measured no better per CPU-second)
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 32  # candidates kept while walking the graph (at least the neighbours fetched)
REFINE_FACTOR = 2  # candidates fetched per neighbour asked for, re-ranked by exact cosine (recall@10 0.99 at 3×)
# The refine factor is raised (doubled, up to MAX_REFINE_FACTOR) on a matrix whose measured recall@10 stays below
# TARGET_RECALL: where near-copies crowd (60 000 crops of 32 px photos) the 64-dimensional PCA ranks them poorly,
# and recall@10 was 0.82 at 2×, 0.91 at 4×, 0.96 at 8× (self-graph 2.2 → 5.4 CPU-s), while efSearch 32 → 128
# gained 0.01. On 10⁶ resampled real embeddings 2× measures 0.947: 4× was used until the forty-third session, when the
# background error (below) stopped the tuning at 2× with efSearch 128 (recall 0.970) instead.
TARGET_RECALL = 0.95
MAX_REFINE_FACTOR = 8
# efSearch is doubled (up to MAX_EF_SEARCH, before the refine factor is raised) while the k-th neighbour's cosine —
# each image's background, which the duplicate decision's scaled cosine (c − b) / (1 − b) divides by — is found lower
# than exact search finds it by more than BACKGROUND_ERROR_TARGET of 1 − b on average over the sampled queries (the
# `background_error`). Recall alone does not bound it: on 10⁶ vectors resampled from real embeddings (clouds of ≈ 300
# near-copies of each photo, 1 − b ≈ 0.011) a few searches in ten miss their cloud, and at 4× (recall 0.980) the error
# was 0.28; the decision's leaks there were 22 526 at 3× (0.966), 18 991 at 4×, 13 803 at 8× (0.105), 11 818 at 16×
# (0.023). A wider walk finds the cloud for less than more re-ranking: 4× with efSearch 128 0.029 at 2.1× the search's
# time of 4× and 32, 16× and 32 0.023 at 3.9× (docs/scale.md, forty-third session). At 10⁵ of the same vectors (error
# 0.0005 at 2×) leaks were 0.4 % above exact search's; Fashion-MNIST's 25 000 images 0.010 at 2×, 50 000 tiles 0.028.
BACKGROUND_ERROR_TARGET = 0.05
MAX_EF_SEARCH = 256
SELF_K = 11  # a self-query above EXACT_LIMIT computes this many neighbours once, for every later caller
RECALL_QUERIES = 200  # seeded sample of queries whose exact neighbours measure the approximate search
PCA_SAMPLE = 5_000  # rows the PCA is fitted on (covariance + eigendecomposition: seconds at any n)
BLOCK = 16_384  # rows converted / searched at once
EXACT_BLOCK_SIMILARITIES = 4_194_304  # query × row similarities an exact search holds per block and core (16 MB)
# Paired rows read tile by tile (`local_order`): each tile's rows within a range of TILE_BYTES of the first matrix and
# SWEEP_TILE_BYTES of the second, from this many pairs on (below, the rows read are few anyway; the order costs
# ≈ 10 ms a million pairs).
TILE_BYTES = 256 * 2**20
SWEEP_TILE_BYTES = 32 * 2**20
LOCAL_ORDER_MIN_PAIRS = 65_536


def hex_to_codes(hex_hashes: list[str]) -> np.ndarray:
    """16-hex-digit (64-bit) hashes → uint8 array (N, 8), the layout FAISS binary indexes want."""
    if not len(hex_hashes):
        return np.zeros((0, 8), dtype=np.uint8)
    joined = bytes.fromhex("".join(hex_hashes))
    return np.frombuffer(joined, dtype=np.uint8).reshape(len(hex_hashes), 8).copy()


# Search quality ------------------------------------------------------------------------------------


@dataclass
class SearchQuality:
    """How a search was done, and (when approximate) how close it came to exact search on a sample."""

    kind: str  # "cosine_knn", "hamming_range" or "hamming_nearest"
    method: str  # "exact" or a description of the approximate index
    n: int
    k: int | None = None  # neighbours measured (cosine) / radius (hamming)
    exact: bool = True
    queries_measured: int = 0
    recall: float | None = None  # share of the exact neighbours (pairs) the search found
    recall_interval: list[float] | None = None  # 95 % normal interval over the sampled queries
    kth_cosine_gap: float | None = None  # mean (exact − found) cosine of the k-th neighbour (≥ 0)
    parameters: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "method": self.method, "n": self.n, "exact": self.exact}
        if self.k is not None:
            out["k" if self.kind in ("cosine_knn", "pixel_knn") else "radius"] = self.k
        if not self.exact:
            out.update(queries_measured=self.queries_measured,
                       recall=None if self.recall is None else round(self.recall, 4),
                       recall_interval=self.recall_interval, parameters=self.parameters)
            if self.kth_cosine_gap is not None:
                out["kth_cosine_gap"] = round(self.kth_cosine_gap, 5)
        return out


def _interval(per_query: np.ndarray) -> tuple[float, list[float]]:
    mean = float(np.mean(per_query))
    half = 1.96 * float(np.std(per_query, ddof=1)) / math.sqrt(len(per_query)) if len(per_query) > 1 else 0.0
    return mean, [round(max(0.0, mean - half), 4), round(min(1.0, mean + half), 4)]


# Float16-aware helpers --------------------------------------------------------------------------


def _f32(block: np.ndarray) -> np.ndarray:
    from auditor.encoding.embedding_store import to_float32

    return np.ascontiguousarray(to_float32(block), dtype=np.float32)


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = _f32(vectors) if np.asarray(vectors).dtype == np.float16 else np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _blocks(n: int, size: int = BLOCK):
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _exact_search(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product k-NN of q among x, best first (ties: the lower row first); where x has fewer than k rows
    the rest is padded as FAISS pads it (row -1, similarity -FLT_MAX). numpy's matrix product and a partial sort,
    a block of queries per core: FAISS's flat search took 3–5× as long on the same vectors (its k-selection), and
    the neighbours are the same (the similarities differ in the last float32 bits)."""
    from auditor.parallel import run_blocks

    x = _f32(x)  # float16 (the shared matrix) decoded once
    n, found = len(x), min(k, len(x))
    sims = np.full((len(q), k), -np.finfo(np.float32).max, dtype=np.float32)
    labels = np.full((len(q), k), -1, dtype=np.int64)
    if not n or not len(q) or not found:
        return sims, labels
    rows = int(np.clip(EXACT_BLOCK_SIMILARITIES // n, 32, 1024))  # queries per block: ≈ 16 MB of similarities

    def search(start: int) -> None:
        block = _f32(q[start : start + rows]) @ x.T
        if found < n:
            top = np.argpartition(-block, found - 1, axis=1)[:, :found]
        else:
            top = np.broadcast_to(np.arange(n), block.shape)
        values = np.take_along_axis(block, top, axis=1)
        order = np.lexsort((top, -values), axis=1)  # by similarity, then by row
        stop = start + len(block)
        sims[start:stop, :found] = np.take_along_axis(values, order, axis=1)
        labels[start:stop, :found] = np.take_along_axis(top, order, axis=1)

    run_blocks(search, range(0, len(q), rows))
    return sims, labels


def exact_search_streamed(x: np.ndarray, q: np.ndarray, k: int, among: np.ndarray | None = None,
                          block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by cosine of a few queries (a recall sample) over x, or over its rows `among`, one block of
    x at a time on every core: memory is a block per core, never a float32 copy of x (5 GB at 10⁶ × 1280).
    Each block keeps its own top k, merged at the end (merging into a running top k copied every block's
    similarities and a row number for each: 8.6 against 6.4 s for 600 queries over 700 000 of the 10⁶ resampled
    vectors). Indices are rows of x."""
    from auditor.parallel import run_blocks

    queries = _f32(q)
    rows = np.arange(len(x), dtype=np.int64) if among is None else np.asarray(among, dtype=np.int64)
    starts = list(range(0, len(rows), block))
    tops: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def search(start: int) -> None:
        block_rows = rows[start:start + block]
        sims = queries @ _f32(x[start:start + block] if among is None else x[block_rows]).T
        if k < sims.shape[1]:
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            tops[start] = np.take_along_axis(sims, top, axis=1), block_rows[top]
        else:
            tops[start] = sims, np.broadcast_to(block_rows, sims.shape)

    run_blocks(search, starts)
    if not starts:
        return np.zeros((len(q), 0), dtype=np.float32), np.zeros((len(q), 0), dtype=np.int64)
    sims = np.concatenate([tops[start][0] for start in starts], axis=1)
    ids = np.concatenate([tops[start][1] for start in starts], axis=1)
    if k < sims.shape[1]:
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        sims, ids = np.take_along_axis(sims, top, axis=1), np.take_along_axis(ids, top, axis=1)
    order = np.argsort(-sims, axis=1, kind="stable")
    return np.take_along_axis(sims, order, axis=1), np.take_along_axis(ids, order, axis=1)


def row_indices(rows) -> np.ndarray:
    """Row numbers as an integer array, in the integer type they come in (node numbers are 4-byte integers at scale:
    casting ≈ 15·10⁶ pairs' to 8 bytes copied 120 MB a column), else as int64."""
    rows = np.asarray(rows)
    return rows if rows.dtype.kind in "iu" else rows.astype(np.int64)


PAIRED_BLOCK = 1_024  # pairs a thread computes at once: 8 192 measured 15 % slower (8.3 against 7.1 s wall for 4 M pairs
# over the 10⁶ store, the same bits): the block's gathered and decoded rows (5 MB here, 40 MB there) then stay in cache


def paired_cosines(x: np.ndarray, rows_x: np.ndarray, y: np.ndarray, rows_y: np.ndarray,
                   block: int = PAIRED_BLOCK) -> np.ndarray:
    """cos(x[rows_x[i]], y[rows_y[i]]) for each i, float32: x and y may be float16 unit matrices (memory-mapped);
    rows are gathered and converted a block at a time, never the whole matrix. A row that recurs in a block (the
    candidate pairs come ordered by their first image, ≈ 15 a row at 10⁶ images) is gathered and converted once:
    the same values, bit for bit. Many pairs over a large matrix are computed tile by tile (`local_order`), so
    that the rows read at once lie in two bounded ranges of it, not all over it."""
    from auditor.parallel import run_blocks

    rows_x, rows_y = row_indices(rows_x), row_indices(rows_y)
    out = np.empty(len(rows_x), dtype=np.float32)
    order = local_order(rows_x, rows_y, _row_bytes(x), _row_bytes(y))
    if order is not None:
        rows_x, rows_y = rows_x[order], rows_y[order]

    def gathered(matrix: np.ndarray, rows: np.ndarray) -> np.ndarray:
        distinct, inverse = np.unique(rows, return_inverse=True)
        return _f32(matrix[distinct])[inverse.reshape(-1)] if len(distinct) < 0.75 * len(rows) else _f32(matrix[rows])

    def compute(start: int) -> None:  # blocks on every core: they write their own rows
        stop = min(start + block, len(rows_x))
        cosines = np.einsum("ij,ij->i", gathered(x, rows_x[start:stop]), gathered(y, rows_y[start:stop]))
        if order is None:
            out[start:stop] = cosines
        else:
            out[order[start:stop]] = cosines

    run_blocks(compute, range(0, len(rows_x), block))
    return out


def _row_bytes(matrix: np.ndarray) -> int:
    return int(matrix.shape[1]) * matrix.dtype.itemsize if matrix.ndim == 2 else 0


def local_order(rows_x: np.ndarray, rows_y: np.ndarray, row_bytes_x: int, row_bytes_y: int,
                tile_bytes: int = TILE_BYTES, min_pairs: int = LOCAL_ORDER_MIN_PAIRS,
                sweep_tile_bytes: int | None = SWEEP_TILE_BYTES) -> np.ndarray | None:
    """An order of the pairs (rows_x[i], rows_y[i]) in which the rows read at once lie within one range of
    `tile_bytes` of x and one of `sweep_tile_bytes` of y (None: `tile_bytes` too): pairs grouped by tile (range of
    x, range of y), ranges of x in turn, the ranges of y swept back and forth (the range last read is read first
    again), each tile's pairs in their given order. None where it would not help: few pairs, or every range read
    is one tile already.

    Why: the candidate pairs' second images lie all over the embedding store. Where the store's pages do not all
    stay in memory (a 4 GB memory limit at 10⁶ images: 2.6 GB of store beside 2.7 GB of the decision's own
    arrays), reading them in the pairs' order re-read the store from disk for almost every pair (≈ 1.2 GB/s of
    reads for minutes, where the cosines take ≈ 30 s with the store in memory); tile by tile, each range is read
    about once per range of x. y's tiles are smaller because a tile needs x's range and y's in memory at once: in a
    4 GiB memory cgroup (page cache counted) beside 3.4 GiB of the decision's arrays, two ranges of 256 MB did not
    stay (14 M random pairs over the 10⁶-row store: 695 s, 763 GB read; y's tiles 32 MB: 170 s, 76 GB; with memory
    to spare 66 → 78 s, more rows gathered per block)."""
    n = len(rows_x)
    if n < min_pairs:
        return None
    spans = []
    sweep = tile_bytes if sweep_tile_bytes is None else sweep_tile_bytes
    for rows, row_bytes, span in ((rows_x, row_bytes_x, tile_bytes), (rows_y, row_bytes_y, sweep)):
        per_tile = max(1, span // max(1, row_bytes))
        spans.append((int(rows.max()) // per_tile + 1 if n else 1, per_tile))
    (tiles_x, per_x), (tiles_y, per_y) = spans
    if tiles_x * tiles_y <= 1:
        return None
    tile_x = (rows_x // per_x).astype(np.int64)
    tile_y = (rows_y // per_y).astype(np.int64)
    tile_y = np.where(tile_x % 2 == 1, tiles_y - 1 - tile_y, tile_y)  # back and forth
    key = tile_x * tiles_y + tile_y
    if tiles_x * tiles_y <= 2**16:
        key = key.astype(np.uint16)  # numpy's stable sort of 16-bit keys is a radix sort: linear
    return np.argsort(key, kind="stable")  # the given order kept within a tile


def stored_rows_index(x: np.ndarray):
    """A FAISS flat index whose stored vectors are x's own memory, not a copy: float16 rows as an
    IndexScalarQuantizer (QT_fp16 codes are IEEE half floats, the stored bits), float32 rows as an IndexFlatIP.
    The exact re-ranking stage of the approximate search: at 10⁶ × 1280 float16 it reads the memory-mapped
    store in place (2.6 GB of page cache the kernel can drop) where a copy was 2.6 GB of anonymous memory.
    The index keeps x alive."""
    import faiss

    x = np.ascontiguousarray(x if x.dtype in (np.float16, np.float32) else x.astype(np.float32))
    n, d = x.shape
    if x.dtype == np.float16:
        index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexFlatIP(d)
    raw = x.reshape(-1).view(np.uint8)
    # A view (FAISS MaybeOwnedVector) over x's bytes; its owner handle is FAISS' empty one, Python keeps x alive.
    index.codes = faiss.MaybeOwnedVectorUInt8.create_view(faiss.swig_ptr(raw), raw.size,
                                                        faiss.MaybeOwnedVectorUInt8().owner)
    index.ntotal = n
    index.referenced_objects = [x]  # FAISS' own slot for objects an index needs alive
    return index


# The approximate index ------------------------------------------------------------------------


class ApproximateIndex:
    """PCA → HNSW graph over a (possibly float16, memory-mapped) unit matrix, with exact re-ranking."""

    def __init__(self, x: np.ndarray, seed: int = 0):
        import faiss

        self.x = x
        n, d = x.shape
        rng = np.random.default_rng(seed)
        sample = _f32(x[np.sort(rng.choice(n, size=min(n, PCA_SAMPLE), replace=False))])
        self.dims = min(REDUCED_DIMS, d)
        self.mean = sample.mean(axis=0)
        centred = sample - self.mean
        # Covariance + eigh, not an SVD of the sample: measured 4 s against 150 s for the SVD on this machine.
        eigenvalues, eigenvectors = np.linalg.eigh((centred.T @ centred).astype(np.float64))
        top = np.argsort(eigenvalues)[::-1][: self.dims]
        self.variance_kept = float(eigenvalues[top].sum() / max(eigenvalues.sum(), 1e-12))
        self.projection = np.ascontiguousarray(eigenvectors[:, top], dtype=np.float32)  # (d, dims)
        # HNSW, not an inverted file: measured on 10⁶ vectors resampled from real embeddings (bench_scale.py),
        # IVF-Flat (√(8n) lists) needed nprobe 16 and 75 CPU-s to reach recall@10 0.94; see docs/scale.md.
        self.index = faiss.IndexHNSWFlat(self.dims, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        self.index.hnsw.efSearch = HNSW_EF_SEARCH
        # One add of every reduced row (n × 64 float32: 256 MB at 10⁶), not batches: measured at 10⁶ resampled
        # vectors, batches of 131 072 left tight clusters of near-copies poorly linked (recall@10 0.89 vs 0.96).
        reduced = np.empty((n, self.dims), dtype=np.float32)
        for start, stop in _blocks(n):
            reduced[start:stop] = self._reduce(x[start:stop])
        self.index.add(reduced)
        # The self-graph's queries are searched in the order of their first reduced coordinate: a block of them has
        # its candidates — the rows re-ranked on the stored matrix — in a narrow band of that coordinate, so the
        # store's pages a block reads are a small set that stays in memory even where the whole store does not.
        self.visit_order = np.argsort(reduced[:, 0], kind="stable")
        del reduced
        self._refined = None
        self.self_graph: tuple[np.ndarray, np.ndarray] | None = None
        self.quality: SearchQuality | None = None
        self.refine_factor = REFINE_FACTOR
        self.ef_search = HNSW_EF_SEARCH
        self.tuning: list[dict] = []  # (refine factor, efSearch, measured recall and background error) of each step of `tune`
        self._truth = None  # (k, seed, exact sample) `tune` measured on, kept to measure the self graph on

    @property
    def description(self) -> str:
        return (f"approximate: PCA {self.x.shape[1]}→{self.dims}, HNSW (M {HNSW_M}, efSearch {self.ef_search}), "
                f"{self.refine_factor}× candidates re-ranked by exact cosine")

    def _reduce(self, block: np.ndarray) -> np.ndarray:
        y = (_f32(block) - self.mean) @ self.projection
        y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(y, dtype=np.float32)

    def search(self, q: np.ndarray, k: int, among: np.ndarray | None = None, order: np.ndarray | None = None,
               refine_factor: int | None = None, ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """k neighbours of each query with exact cosines, best first; -1 / -1.0 where fewer were found.
        `refine_factor`, `ef_search`: candidates re-ranked per neighbour asked for and kept while walking the graph,
        where not those tuned to this matrix.
        `among`: row indices the neighbours must come from (the graph is searched the wider the fewer they are).
        `order`: the order the queries are searched in (a permutation of their rows; each query's answer does not
        depend on it, only which pages of the stored rows are read together).

        One FAISS IndexRefine (`refined`): the HNSW graph proposes `fetch` candidates per query and their cosines
        are recomputed on the stored rows themselves (`stored_rows_index`: FAISS reads x's own memory, decoding
        float16 and multiplying in one SIMD pass), so no copy of the rows is made and only a block of queries is
        converted to float32 at a time."""
        import faiss

        allowed = len(self.x) if among is None else len(among)
        fetch = min(allowed, max(k * (refine_factor or self.refine_factor), k + 8))
        hnsw_params = faiss.SearchParametersHNSW()
        hnsw_params.efSearch = max(ef_search or self.ef_search, fetch)
        if among is not None:
            hnsw_params.sel = selector = faiss.IDSelectorBatch(np.ascontiguousarray(among, dtype=np.int64))  # noqa: F841
            hnsw_params.efSearch = int(min(len(self.x), hnsw_params.efSearch * max(1, math.ceil(len(self.x) / max(1, allowed)))))
        transformed = faiss.SearchParametersPreTransform()
        transformed.index_params = hnsw_params
        params = faiss.IndexRefineSearchParameters()
        params.k_factor = (fetch + 0.5) / k  # FAISS fetches int(k · k_factor) candidates: exactly `fetch`
        params.base_index_params = transformed
        refined = self.refined
        sims = np.empty((len(q), k), dtype=np.float32)
        labels = np.empty((len(q), k), dtype=np.int64)
        with random_access(self.x):  # the re-ranking reads candidates' rows at random (memory.random_access)
            for start, stop in _blocks(len(q)):
                if order is None:
                    sims[start:stop], labels[start:stop] = refined.search(_f32(q[start:stop]), k, params=params)
                else:
                    rows = np.sort(order[start:stop])  # this block's queries, read in ascending rows
                    sims[rows], labels[rows] = refined.search(_f32(q[rows]), k, params=params)
        sims[labels < 0] = -1.0
        return sims, labels

    @property
    def refined(self):
        """The search as one FAISS index, built once: (row − mean) · projection → unit length → HNSW candidates →
        exact cosines on the stored rows (a view of x, not a copy)."""
        import faiss

        if self._refined is None:
            d = self.x.shape[1]
            transform = faiss.LinearTransform(d, self.dims, True)  # (row − mean) · projection, then unit length
            faiss.copy_array_to_vector(np.ascontiguousarray(self.projection.T).ravel(), transform.A)
            faiss.copy_array_to_vector((-(self.mean @ self.projection)).astype(np.float32), transform.b)
            transform.is_trained = True
            base = faiss.IndexPreTransform(self.index)
            base.prepend_transform(faiss.NormalizationTransform(self.dims))
            base.prepend_transform(transform)
            stored = stored_rows_index(self.x)
            refined = faiss.IndexRefine(base, stored)
            refined.own_fields = False
            # FAISS holds plain pointers: the Python objects it points to live as long as this index.
            refined.referenced_objects = [base, stored]
            self._refined = refined
        return self._refined

    def tune(self, k: int, seed: int = 0) -> SearchQuality:
        """Measure recall@k and the background error (as `measure`) and, while the error is above its target or recall
        below TARGET_RECALL, widen the search a step (`next_search_step`) and measure again on the same queries; the last
        measurement is the index's quality.
        Done before the shared k-NN graph is searched, so every caller gets the tuned search."""
        truth = self._exact_sample(k, seed, RECALL_QUERIES)
        self._truth = (k, seed, truth)  # the self graph is measured on the same queries (`search_self`)
        while True:
            quality = self.measure(k, seed, exact=truth)
            error = quality.parameters["background_error"]
            self.tuning.append({"refine_factor": self.refine_factor, "ef_search": self.ef_search,
                                "recall": round(quality.recall, 4), "background_error": error})
            step = next_search_step(quality.recall, error, self.refine_factor, self.ef_search)
            if step is None:
                break
            self.refine_factor, self.ef_search = step
            self._refined = None
        if len(self.tuning) > 1:
            quality.parameters["refine_factor_steps"] = list(self.tuning)
        return quality

    def _exact_sample(self, k: int, seed: int, queries: int):
        """(rows, exact sims, exact labels) of k + 1 neighbours for a seeded sample of the rows as queries."""
        n = len(self.x)
        rng = np.random.default_rng(seed + 1)
        rows = np.sort(rng.choice(n, size=min(n, queries), replace=False))
        return (rows, *exact_search_streamed(self.x, self.x[rows], k + 1))

    def measure(self, k: int, seed: int = 0, queries: int | None = None, exact=None) -> SearchQuality:
        """recall@k of the self-query (the query itself excluded) against exact search, on a seeded sample
        (RECALL_QUERIES queries unless given; `exact`: that sample's exact answer, from `_exact_sample`)."""
        n = len(self.x)
        rows, true_sims, true_labels = exact if exact is not None else self._exact_sample(
            k, seed, RECALL_QUERIES if queries is None else queries)
        found_sims, found_labels = self.search(self.x[rows], k + 1)
        recall, interval, gap, error = compared_with_exact(rows, true_sims, true_labels, found_sims, found_labels, k)
        self.quality = SearchQuality("cosine_knn", self.description, n, k, exact=False, queries_measured=len(rows),
                                     recall=recall, recall_interval=interval, kth_cosine_gap=gap,
                                     parameters={"reduced_dims": self.dims, "pca_variance_kept": round(self.variance_kept, 4),
                                                 "index": "HNSW", "hnsw_m": HNSW_M, "ef_search": self.ef_search,
                                                 "refine_factor": self.refine_factor, "seed": seed,
                                                 "background_error": round(error, 4)})
        return self.quality

    def search_self(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The self-query k-NN graph (each row's k nearest rows, itself usually first), searched in three steps and
        measured on `tune`'s exact sample (`self.quality` then describes this graph):

        1. every row searched with the narrow walk (efSearch `HNSW_EF_SEARCH`, the refine factor tuned for recall);
        2. each row's list completed with the rows that list it closer than its own last neighbour (`take_reverse_edges`:
           cosines are exact, so such a row is one its search missed);
        3. where the tuning had to widen the walk (the narrow walk's background error above its target), the rows whose
           search probably failed (`suspect_rows`) searched again with the widest walk (`MAX_EF_SEARCH`), their lists
           merged.

        Why: at 10⁶ resampled vectors (clouds of ≈ 300 near-copies a photo) the narrow walk missed the whole cloud
        of about one query in fifty, which put that image's background (its 10th neighbour's cosine) far low and
        every pair of its far high on the duplicate decision's scaled cosine; widening every query's walk until the
        mean background error met its target (efSearch 128) doubled the search, while the failures announce
        themselves in the graph. Measured there (docs/scale.md, forty-fourth session): 5.5 % of rows searched again,
        the graph in 27.3 s with a background error of 0.015 on 1 000 sampled queries, against 40.9 s and 0.058 with
        every query at efSearch 128 (19.6 s and 0.20 with every query at 32).
        Where the graph so searched still misses the target (`BACKGROUND_ERROR_TARGET`) it is searched again with
        every query at the tuned efSearch (`self.ef_search`) before steps 2 and 3."""
        k = min(k, len(self.x))
        narrow = min(self.ef_search, HNSW_EF_SEARCH)
        # Rows are searched again only where the tuning had to widen the walk for the backgrounds: where the narrow
        # walk already meets the target, searching the suspects again bought little (10⁶ real 32 px crops: background
        # error 0.0052 → 0.0039 on 1 000 queries, the graph 49.9 → 62.3 s); the reverse edges cost no cosine.
        re_search = self.ef_search > narrow
        tuned = self.quality  # the per-query search's own measurement, kept beside the graph's (`tuned_search`)
        for ef in dict.fromkeys((narrow, self.ef_search)):  # the narrow walk first; the tuned one where it falls short
            sims, labels = self.search(self.x, k, order=self.visit_order, ef_search=ef)
            sims, labels, missed = take_reverse_edges(sims, labels)
            suspects = (np.flatnonzero(suspect_rows(sims, labels, missed)) if re_search
                        else np.zeros(0, dtype=np.int64))
            if len(suspects):
                wide_sims, wide_labels = self.search(self.x[suspects], k, ef_search=MAX_EF_SEARCH)
                sims[suspects], labels[suspects] = merge_neighbour_lists(sims[suspects], labels[suspects], wide_sims,
                                                                         wide_labels, k)
            steps = {"ef_search": ef, "rows_completed_by_reverse_edges": int((missed > 0).sum()),
                     "rows_re_searched": int(len(suspects)), "re_search_ef_search": MAX_EF_SEARCH}
            quality = self._measure_graph(sims, labels, steps, tuned)
            if quality is None or quality.parameters["background_error"] <= BACKGROUND_ERROR_TARGET:
                break
        return sims, labels

    def _measure_graph(self, sims: np.ndarray, labels: np.ndarray, steps: dict,
                       tuned: "SearchQuality | None") -> "SearchQuality | None":
        """recall@k and background error of the self graph's rows in `tune`'s exact sample; `self.quality` becomes
        this measurement, with `tuned` (the per-query search's) in its parameters as `tuned_search`. None before
        `tune`."""
        truth = self._truth
        if truth is None or tuned is None or labels.shape[1] < truth[0] + 1:
            return None
        k, seed, (rows, true_sims, true_labels) = truth
        recall, interval, gap, error = compared_with_exact(rows, true_sims, true_labels, sims[rows], labels[rows], k)
        parameters = dict(tuned.parameters)
        parameters.update(tuned_search={"recall": round(tuned.recall, 4),
                                        "background_error": tuned.parameters["background_error"]},
                          background_error=round(error, 4), self_graph=steps)
        method = f"{self.description}; the shared graph walked with efSearch {steps['ef_search']}, completed by its reverse edges"
        if steps["rows_re_searched"]:
            method += f", its {steps['rows_re_searched']} rows whose search failed searched again with efSearch {MAX_EF_SEARCH}"
        self.quality = SearchQuality("cosine_knn", method, len(self.x), k, exact=False,
                                     queries_measured=len(rows), recall=recall, recall_interval=interval,
                                     kth_cosine_gap=gap, parameters=parameters)
        return self.quality


def compared_with_exact(rows: np.ndarray, true_sims: np.ndarray, true_labels: np.ndarray, found_sims: np.ndarray,
                        found_labels: np.ndarray, k: int) -> tuple[float, list[float], float, float]:
    """(recall@k, its interval, k-th cosine gap, background error) of found self-query neighbours of `rows` against
    the exact ones; both sides have k + 1 columns and the query itself is left out of each (it finds itself, usually
    first)."""
    found_sims, found_labels = drop_self_rows(found_sims, found_labels, rows, k)
    true_sims, true_labels = drop_self_rows(true_sims, true_labels, rows, k)
    per_query = np.array([len(set(a[a >= 0].tolist()) & set(b[b >= 0].tolist())) / max(1, int((a >= 0).sum()))
                          for a, b in zip(true_labels, found_labels)])
    recall, interval = _interval(per_query)
    gap = float(np.mean(np.maximum(0.0, true_sims[:, -1] - found_sims[:, -1])))
    return recall, interval, gap, background_error(true_sims[:, -1], found_sims[:, -1])


SUSPECT_SPREAD = 10.0  # a row whose 1 − (last neighbour's cosine) is this many times its closest-packed neighbour's
REVERSE_EDGE_CHUNK = 1 << 20  # edges checked at once (each against its target's k-entry list)


def take_reverse_edges(sims: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sims, labels, missed) of a self-query k-NN graph whose rows are completed with their reverse edges: where row
    j lists row i with a cosine above i's own last neighbour's and i does not list j, the search for i missed j (the
    cosines are exact), so j joins i's list. `missed`: how many such rows each row had. No cosine is computed."""
    n, k = labels.shape
    sims, labels = sims.copy(), labels.copy()
    last = sims[:, -1]
    froms, tos, values = [], [], []
    for start in range(0, n * k, REVERSE_EDGE_CHUNK):
        target = labels.reshape(-1)[start:start + REVERSE_EDGE_CHUNK]
        value = sims.reshape(-1)[start:start + REVERSE_EDGE_CHUNK]
        source = np.arange(start, start + len(target)) // k
        closer = (target >= 0) & (value > last[np.maximum(target, 0)])
        source, target, value = source[closer], target[closer], value[closer]
        unlisted = ~(labels[target] == source[:, None]).any(axis=1)
        froms.append(source[unlisted]), tos.append(target[unlisted]), values.append(value[unlisted])
    source, target, value = np.concatenate(froms), np.concatenate(tos), np.concatenate(values)
    missed = np.bincount(target, minlength=n)
    if not len(target):
        return sims, labels, missed
    order = np.lexsort((-value, target))  # by row, nearest first
    source, target, value = source[order], target[order], value[order]
    first = np.r_[True, target[1:] != target[:-1]]
    rank = np.arange(len(target)) - np.maximum.accumulate(np.where(first, np.arange(len(target)), 0))
    keep = rank < k
    rows, slot = np.unique(target[keep], return_inverse=True)
    extra_sims = np.full((len(rows), k), -1.0, dtype=np.float32)
    extra_labels = np.full((len(rows), k), -1, dtype=labels.dtype)
    extra_sims[slot.reshape(-1), rank[keep]] = value[keep]
    extra_labels[slot.reshape(-1), rank[keep]] = source[keep]
    sims[rows], labels[rows] = merge_neighbour_lists(sims[rows], labels[rows], extra_sims, extra_labels, k)
    return sims, labels, missed


def suspect_rows(sims: np.ndarray, labels: np.ndarray, missed: np.ndarray) -> np.ndarray:
    """Rows of a self-query k-NN graph whose search probably failed: it missed rows that list it (`missed`), or its
    last neighbour lies SUSPECT_SPREAD times further from 1 than that of the most closely packed row it lists (its
    neighbours sit in a crowd it was not found inside), or it found fewer than k."""
    last = sims[:, -1]  # −1 where fewer than k were found (searches and merges pad with −1)
    packed = np.where(labels >= 0, last[np.maximum(labels, 0)], -1.0).max(axis=1)
    return (missed > 0) | ((1.0 - last) > SUSPECT_SPREAD * (1.0 - packed)) | (labels[:, -1] < 0)


def merge_neighbour_lists(sims_a: np.ndarray, labels_a: np.ndarray, sims_b: np.ndarray, labels_b: np.ndarray,
                          k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k nearest of two neighbour lists (exact cosines; −1 labels are padding), each row once."""
    sims = np.concatenate([sims_a, sims_b], axis=1)
    labels = np.concatenate([labels_a, labels_b], axis=1)
    sims = np.where(labels >= 0, sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")
    sims, labels = np.take_along_axis(sims, order, axis=1), np.take_along_axis(labels, order, axis=1)
    by_label = np.argsort(labels, axis=1, kind="stable")  # a repeated label: its nearer (earlier) copy first
    sorted_labels = np.take_along_axis(labels, by_label, axis=1)
    repeated = np.zeros(labels.shape, dtype=bool)
    np.put_along_axis(repeated, by_label, np.c_[np.zeros((len(labels), 1), bool),
                                                sorted_labels[:, 1:] == sorted_labels[:, :-1]], axis=1)
    kept = ~repeated & (labels >= 0)
    first = np.argsort(~kept, axis=1, kind="stable")[:, :k]
    sims, labels = np.take_along_axis(sims, first, axis=1), np.take_along_axis(labels, first, axis=1)
    missing = ~np.take_along_axis(kept, first, axis=1)
    return np.where(missing, -1.0, sims).astype(np.float32), np.where(missing, -1, labels)


def background_error(exact_kth: np.ndarray, found_kth: np.ndarray) -> float:
    """Mean over queries of how much lower the search found the k-th neighbour's cosine than exact search,
    relative to 1 − the exact one: the error it puts into a scaled cosine (c − b) / (1 − b) whose background b it is.
    A query with fewer than k found (−1) counts as found at −1."""
    exact_kth, found_kth = np.asarray(exact_kth, dtype=np.float64), np.asarray(found_kth, dtype=np.float64)
    if not len(exact_kth):
        return 0.0
    shortfall = np.maximum(0.0, exact_kth - found_kth)
    return float(np.mean(shortfall / np.maximum(1.0 - exact_kth, 1e-3)))


def next_search_step(recall: float, error: float, refine_factor: int, ef_search: int) -> tuple[int, int] | None:
    """`tune`'s next (refine factor, efSearch), or None where the search is good enough or at its limits: efSearch
    doubled while the background error is above BACKGROUND_ERROR_TARGET (up to MAX_EF_SEARCH), else the refine factor
    doubled while recall is below TARGET_RECALL (up to MAX_REFINE_FACTOR)."""
    if error > BACKGROUND_ERROR_TARGET and ef_search < MAX_EF_SEARCH:
        return refine_factor, min(MAX_EF_SEARCH, 2 * ef_search)
    if recall < TARGET_RECALL and refine_factor < MAX_REFINE_FACTOR:
        return min(MAX_REFINE_FACTOR, 2 * refine_factor), ef_search
    return None


def drop_self_rows(sims: np.ndarray, labels: np.ndarray, query_rows: np.ndarray, k: int):
    """drop_self for queries that are rows `query_rows` of the searched matrix."""
    unwanted = (labels == np.asarray(query_rows)[:, None]) | (labels < 0)
    order = np.argsort(unwanted, axis=1, kind="stable")
    return np.take_along_axis(sims, order, axis=1)[:, :k], np.take_along_axis(labels, order, axis=1)[:, :k]


# One index per matrix, shared by every caller ------------------------------------------------------

_lock = threading.Lock()
_indexes: "weakref.WeakKeyDictionary[Any, ApproximateIndex]" = weakref.WeakKeyDictionary()
_by_id: dict[int, tuple[weakref.ref, ApproximateIndex]] = {}
_fingerprints: dict[int, tuple[weakref.ref, tuple]] = {}  # read-only arrays' fingerprints, by object
_exact_graphs: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # by the vectors' values: a few, the largest kept
_graph_sources: dict[tuple, Any] = {}  # by the vectors' values: where a graph may be stored (attach_graph_source)
EXACT_GRAPHS_KEPT = 4  # at most 2.6 MB each (20 000 × 11 neighbours)


def _index_for(x: np.ndarray) -> ApproximateIndex:
    """The approximate index of this array object (built and tuned to it on first use, forgotten with the array)."""
    with _lock:
        entry = _by_id.get(id(x))
        if entry is not None and entry[0]() is x:
            return entry[1]
    index = ApproximateIndex(x)
    index.tune(min(10, len(x) - 1))
    with _lock:
        # The table is bound as a default: at interpreter exit the module's globals may already be None.
        _by_id[id(x)] = (weakref.ref(x, lambda _ref, key=id(x), table=_by_id: table.pop(key, None)), index)
    return index


def _exact_self_graph(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact self-query k-NN of these vectors, searched once at max(k, SELF_K) for every caller: the duplicate
    candidates (on a float32 copy of the shared float16 matrix: the same values), the outliers and the nearest
    training images ask for 2–11 neighbours of the same vectors, and their separate all-pairs searches were
    half the checks' time at 10⁴ images. Known by the vectors' values, not the array object. Copies: callers
    may change them."""
    key = _fingerprint(x)
    with _lock:
        graph = _exact_graphs.get(key)
    if graph is None or graph[0].shape[1] < k:
        wanted = min(len(x), max(k, SELF_K))
        with _lock:
            source = _graph_sources.get(key)
        graph = source.load(x, wanted) if source is not None else None
        if graph is None:
            graph = _exact_search(x, x, wanted)
            if source is not None:
                source.save(x, *graph)
        with _lock:
            _exact_graphs[key] = graph
            while len(_exact_graphs) > EXACT_GRAPHS_KEPT:  # the smallest go first: one class's images, searched once
                del _exact_graphs[min(_exact_graphs, key=lambda kept: kept[0][0])]  # of equal sizes, the oldest
    return graph[0][:, :k].copy(), graph[1][:, :k].copy()


def extend_exact_graph(x: np.ndarray, known_rows: np.ndarray, known_sims: np.ndarray, known_ids: np.ndarray,
                       k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact self-query k-NN graph of x (as `_exact_search(x, x, k)` gives it) from known neighbours of some of
    its rows: `known_rows` (rows of x), and for each its k' ≥ k nearest (`known_sims`, `known_ids`: rows of x, −1
    padding) among a set of rows that holds every known row (a kept graph of an earlier, smaller dataset). Every
    other row is searched among all rows; a known row keeps its known neighbours unless one of those rows is
    nearer. Only (other rows × all rows) similarities are computed: a dataset that grew by 1 % costs 2 % of a full
    search. Ordered as `_exact_search` orders (similarity, then the lower row), so the graph is a full search's up
    to float rounding: a known similarity was computed in another matrix product, its last float32 bit may differ,
    and with it the order of two neighbours tied that closely (identical vectors)."""
    n = len(x)
    k = min(k, n)
    known_rows = np.asarray(known_rows, dtype=np.int64)
    if known_sims.shape[1] < k:
        raise ValueError(f"a known graph of {known_sims.shape[1]} neighbours cannot give {k}")
    fresh = np.ones(n, dtype=bool)
    fresh[known_rows] = False
    new_rows = np.flatnonzero(fresh)
    sims = np.empty((n, k), dtype=np.float32)
    ids = np.empty((n, k), dtype=np.int64)
    if len(new_rows):
        sims[new_rows], ids[new_rows] = _exact_search(x, x[new_rows], k)
    if not len(known_rows):
        return sims, ids
    old_sims = np.asarray(known_sims[:, :k], dtype=np.float32)
    old_ids = np.asarray(known_ids[:, :k], dtype=np.int64)
    if len(new_rows):
        # A searched row among the known neighbours comes back from the search below: dropped here, not twice.
        stale = (old_ids >= 0) & fresh[np.maximum(old_ids, 0)]
        old_ids = np.where(stale, -1, old_ids)
        near_sims, near = _exact_search(x[new_rows], x[known_rows], k)
        old_sims = np.concatenate([old_sims, near_sims], axis=1)
        old_ids = np.concatenate([old_ids, np.where(near >= 0, new_rows[np.maximum(near, 0)], -1)], axis=1)
    padding = old_ids < 0  # after every real neighbour, whatever its similarity
    order = np.lexsort((np.where(padding, n, old_ids), np.where(padding, np.inf, -old_sims)), axis=1)[:, :k]
    sims[known_rows] = np.where(np.take_along_axis(padding, order, axis=1), -np.finfo(np.float32).max,
                                np.take_along_axis(old_sims, order, axis=1))
    ids[known_rows] = np.take_along_axis(old_ids, order, axis=1)
    return sims, ids


def attach_graph_source(x: np.ndarray, source) -> None:
    """Where `_exact_self_graph` looks before it searches these vectors, and what it tells after a search: an
    object with `load(x, k) -> (sims, ids) | None` and `save(x, sims, ids)` (the cache's stored graphs:
    similarity/graph_store.py). Known by the vectors' values, as the graphs are."""
    key = _fingerprint(x)
    with _lock:
        _graph_sources[key] = source
        while len(_graph_sources) > EXACT_GRAPHS_KEPT:
            del _graph_sources[next(iter(_graph_sources))]  # the oldest first


def has_exact_graph(x: np.ndarray, k: int) -> bool:
    """Whether an exact self-query k-NN of these vectors with at least k neighbours is already at hand. No graph of
    their shape: no (a writable array, e.g. one class's rows, would be hashed at every ask)."""
    with _lock:
        if not any(kept[0] == x.shape for kept in _exact_graphs):
            return False
    key = _fingerprint(x)
    with _lock:
        graph = _exact_graphs.get(key)
    return graph is not None and graph[0].shape[1] >= k


def _fingerprint(x: np.ndarray) -> tuple:
    """The vectors' float32 values, hashed block by block (0.1 s at the exact-search limit, 20 000 × 1 280), once per
    array object: the checks ask about the same matrix several times."""
    import hashlib

    with _lock:
        entry = _fingerprints.get(id(x))
        if entry is not None and entry[0]() is x:
            return entry[1]
    digest = hashlib.blake2b(digest_size=16)
    for start, stop in _blocks(len(x)):
        digest.update(_f32(x[start:stop]).tobytes())
    key = (x.shape, digest.hexdigest())
    if not x.flags.writeable:  # a writeable array may change under the same id: hashed every time
        with _lock:
            _fingerprints[id(x)] = (weakref.ref(x, lambda _ref, at=id(x), table=_fingerprints: table.pop(at, None)), key)
    return key


def search_quality(unit_vectors: np.ndarray, k: int | None = None) -> SearchQuality:
    """How `knn` searches this matrix: exact, or the approximate index's recall@10 as measured (and tuned for) when
    the index was built; `k` is reported for exact search."""
    n = len(unit_vectors)
    if n <= EXACT_LIMIT:
        return SearchQuality("cosine_knn", "exact (every pair: matrix products)", n, k)
    return _index_for(unit_vectors).quality  # measured (and tuned for) when the index was built


def knn(unit_vectors: np.ndarray, k: int, queries: np.ndarray | None = None, among: np.ndarray | None = None,
        refine_factor: int | None = None):
    """k nearest neighbours by cosine: (similarities, indices), each (Q, k). `unit_vectors`: L2-normalised,
    float32 or float16 (a memory map is fine). Exact up to EXACT_LIMIT vectors, else approximate (see the
    module docstring) with exact similarities; the index is built once per array object and reused.
    `among`: sorted row indices the neighbours must come from (e.g. the training images); indices returned
    are rows of `unit_vectors` all the same. `refine_factor`: for other queries searched approximately, candidates
    re-ranked per neighbour asked for instead of the factor tuned to the matrix (`ApproximateIndex.search`)."""
    x = unit_vectors
    n = len(x)
    self_query = queries is None or queries is x
    q = x if self_query else queries
    if among is not None:
        among = np.asarray(among, dtype=np.int64)
        k = min(k, len(among))
        if n <= EXACT_LIMIT or len(among) <= EXACT_LIMIT:
            sims, found = _exact_search(x[among], q, k)
            return sims, np.where(found >= 0, among[np.maximum(found, 0)], -1)
        return _index_for(x).search(q, k, among=among)
    k = min(k, n)
    if n <= EXACT_LIMIT:
        return _exact_self_graph(x, k) if self_query else _exact_search(x, q, k)
    index = _index_for(x)
    if not self_query:
        return index.search(q, k, refine_factor=refine_factor)
    if index.self_graph is None or index.self_graph[1].shape[1] < k:
        # Self-queries: one k-NN graph for every caller (outliers, label neighbours, duplicate candidates), searched
        # once with the index tuned to this matrix (`_index_for`), its failed rows searched again (`search_self`).
        index.self_graph = index.search_self(max(k, SELF_K))
    sims, labels = index.self_graph
    return sims[:, :k], labels[:, :k]


def cosine_pairs(unit_vectors: np.ndarray, min_cosine: float, k_when_approximate: int = 32):
    """Pairs (i < j) with cosine ≥ min_cosine; `unit_vectors` must be L2-normalised. Exact (range search) up to
    EXACT_LIMIT; above it, among each vector's `k_when_approximate` nearest neighbours."""
    import faiss

    n = len(unit_vectors)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32)
    if n <= EXACT_LIMIT:
        x = _f32(unit_vectors)
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        lims, sims, labels = index.range_search(x, float(min_cosine))
        rows = np.repeat(np.arange(n), np.diff(lims).astype(np.int64))
        keep = rows < labels
        return np.stack([rows[keep], labels[keep].astype(np.int64)], axis=1), sims[keep]
    sims, labels = knn(unit_vectors, k_when_approximate)
    rows = np.repeat(np.arange(n), sims.shape[1])
    sims, labels = sims.ravel(), labels.ravel()
    keep = (labels >= 0) & (sims >= min_cosine) & (rows != labels)
    pairs = np.sort(np.stack([rows[keep], labels[keep]], axis=1), axis=1)
    pairs, first = np.unique(pairs, axis=0, return_index=True)
    return pairs, sims[keep][first]


def drop_self(sims: np.ndarray, neighbours: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """From a self-query of k + 1 neighbours, the first k that are not the query itself (nor missing, -1).
    The query is usually first, but not always: identical vectors tie, and approximate search may miss it."""
    return drop_self_rows(sims, neighbours, np.arange(len(neighbours)), k)


# Hamming --------------------------------------------------------------------------------------------


def _multi_hash_plan(n: int, bits: int, max_distance: int) -> tuple[int, int, int] | None:
    """(tables, bits per table, bits flipped per probe) of the cheapest complete multi-index hashing for this
    radius: two codes within `max_distance` bits differ in at most ⌊max_distance / tables⌋ bits of some table
    (pigeonhole), so probing every key within `flips` ≥ that of the query's in each table misses nothing.
    Cost per query ≈ tables × probes per table × codes per bucket. None: no plan of 6–24-bit tables."""
    from math import comb

    best = None
    for tables in range(1, max_distance + 2):
        table_bits = min(bits // tables, 24)
        if table_bits < 6:
            continue
        flips = max_distance // tables
        probes = sum(comb(table_bits, f) for f in range(flips + 1))
        cost = tables * probes * (1 + n / 2 ** table_bits)
        if best is None or cost < best[0]:
            best = (cost, tables, table_bits, flips)
    return None if best is None else best[1:]


def _hamming_index(codes: np.ndarray, max_distance: int):
    """(index, description): flat (exact) up to HAMMING_EXACT_LIMIT codes, else multi-index hashing planned
    by `_multi_hash_plan` (complete for this radius by the pigeonhole principle): on direct-address tables
    (`multi_index.DirectMultiIndex`) for 64-bit codes, FAISS's IndexBinaryMultiHash for other widths."""
    import faiss

    from auditor.similarity.multi_index import MAX_TABLE_BITS, DirectMultiIndex

    bits = codes.shape[1] * 8
    plan = _multi_hash_plan(len(codes), bits, max_distance)
    codes = np.ascontiguousarray(codes)
    if len(codes) <= HAMMING_EXACT_LIMIT or plan is None:
        index = faiss.IndexBinaryFlat(bits)
        index.add(codes)
        return index, "exact (FAISS IndexBinaryFlat)"
    tables, table_bits, flips = plan
    method = (f"multi-index hashing: {tables} tables of {table_bits} bits, keys within {flips} bits probed "
              f"(complete within {max_distance} bits)")
    if bits == 64 and table_bits <= MAX_TABLE_BITS:
        return DirectMultiIndex(codes, tables, table_bits, flips), method
    index = faiss.IndexBinaryMultiHash(bits, tables, table_bits)
    index.nflip = flips
    index.add(codes)
    return index, method + ", FAISS IndexBinaryMultiHash"


HAMMING_CHUNK = 65_536  # probe rows per range search: their matches are held at once, then reduced


def _range(index, probe: np.ndarray, max_distance: int, reduce=None, threads: int = 0):
    """(query, code, distance) rows ordered by query, then code: the flat index's own order, and the order the
    multi-index one is put in, so callers that keep first sightings see the same pairs whichever ran.
    Searched in chunks of HAMMING_CHUNK probe rows on every core (FAISS releases the GIL; the index is only
    read). `reduce(rows)`: applied to each chunk's rows (query numbers global) before they are kept, so what a
    caller drops (e.g. all but each query's closest matches) is never held for all queries at once."""
    from auditor.parallel import run_blocks

    size = HAMMING_CHUNK
    found: dict[int, np.ndarray] = {}

    def search(start: int) -> None:
        part = np.ascontiguousarray(probe[start:start + size])
        lims, distances, labels = index.range_search(part, max_distance + 1)
        rows = np.repeat(np.arange(start, start + len(part)), np.diff(lims).astype(np.int64))
        chunk = np.stack([rows, labels.astype(np.int64), distances.astype(np.int64)], axis=1)
        chunk = chunk[np.lexsort((chunk[:, 1], chunk[:, 0]))]
        found[start] = chunk if reduce is None else reduce(chunk)

    starts = range(0, len(probe), size)
    # The flat index spreads one search over its own OpenMP threads; a few chunks need no more.
    run_blocks(search, starts, threads=threads or (1 if len(probe) <= size else 0))
    parts = [found[start] for start in starts]
    return np.concatenate(parts) if parts else np.zeros((0, 3), dtype=np.int64)


def hamming_pairs(codes: np.ndarray, max_distance: int, queries: np.ndarray | None = None,
                  quality: list | None = None, reduce=None):
    """Pairs within `max_distance` bits. Without `queries`, pairs inside `codes` (i < j); with them,
    (query i, code j) pairs, e.g. queries are the mirrored hashes of the same images. With `quality`
    (a list), a SearchQuality is appended: above HAMMING_EXACT_LIMIT the result on a seeded sample of
    queries is compared with an exact search. `reduce`: applied to each chunk of (query, code, distance)
    rows as they are found (see `_range`; with `queries` only)."""
    import faiss

    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    probe = codes if queries is None else np.ascontiguousarray(queries, dtype=np.uint8)
    if not len(codes) or not len(probe):
        return np.zeros((0, 3), dtype=np.int64)
    index, method = _hamming_index(codes, max_distance)
    pairs = _range(index, probe, max_distance, reduce=reduce if queries is not None else None)
    if queries is None:
        pairs = pairs[pairs[:, 0] < pairs[:, 1]]
    if quality is not None:
        record = SearchQuality("hamming_range", method, len(codes), max_distance, exact=method.startswith("exact"))
        if not record.exact:
            rng = np.random.default_rng(0)
            sample = np.sort(rng.choice(len(probe), size=min(len(probe), 1000), replace=False))
            flat = faiss.IndexBinaryFlat(codes.shape[1] * 8)
            flat.add(codes)
            truth = _range(flat, probe[sample], max_distance)
            found = _range(index, probe[sample], max_distance)
            per_query = []
            for q in range(len(sample)):
                t = set(truth[truth[:, 0] == q, 1].tolist())
                if t:
                    per_query.append(len(t & set(found[found[:, 0] == q, 1].tolist())) / len(t))
            if per_query:
                record.recall, record.recall_interval = _interval(np.array(per_query))
            record.queries_measured = len(sample)
            tables, table_bits, flips = _multi_hash_plan(len(codes), codes.shape[1] * 8, max_distance)
            record.parameters = {"tables": tables, "table_bits": table_bits, "flips": flips, "seed": 0}
        quality.append(record)
    return pairs


# The duplicate candidates' hash search: each probe's nearest codes within the radius --------------------------

# Codes from which the duplicate candidates' hash search may be approximate: multi-index tables planned for one bit
# less than the radius (complete within radius − 1 bits; at the radius they miss the codes that differ in more than
# the probed flips in every table), used where a seeded sample searched completely says they find TARGET_RECALL of
# the matches, else the complete search. Each probe's 32 nearest within 6 bits, both cores: the dihedral pHash codes
# of 10⁶ real 32 px crops 16.8 s wall against 135 s complete, 0.979 of the complete search's rows (every one within
# 4 bits, 0.90 of those at 6; FAISS's binary IVF, used before this version, took 63 s for 0.934 of them); the 10⁶
# resampled vectors' copy-heavy codes 36 s (the binary IVF 42 s). Below it the complete search costs little more
# (200 000 real codes: 5.6 s against 1.9).
HAMMING_APPROXIMATE_FROM = 200_000
# Probes that share their code are searched once from this share of repeats on: the 8 rotations and mirrorings of
# the 10⁶ resampled vectors' thumbnails are 8 000 000 probes of 5 140 906 distinct codes (copies hash alike).
REPEATED_CODES_SHARE = 0.1
HAMMING_QUALITY_SAMPLE = 10_000  # probes whose result is compared with exact search, every run (matches are rare)


def nearest_per_probe(rows: np.ndarray, k: int, distance: np.ndarray | None = None) -> np.ndarray:
    """Of (probe, code, distance, …) rows ordered by probe then code, each probe's k nearest by `distance` (one
    value per row; default: the third column), ties to the lower code, still in (probe, code) order."""
    if not len(rows):
        return rows
    distance = rows[:, 2] if distance is None else distance
    by_distance = np.lexsort((rows[:, 1], distance, rows[:, 0]))
    probe = rows[by_distance, 0]
    first = np.flatnonzero(np.r_[True, probe[1:] != probe[:-1]])
    rank = np.arange(len(probe)) - np.repeat(first, np.diff(np.r_[first, len(probe)]))
    return rows[np.sort(by_distance[rank < k])]


def _index_nearest(index, probes: np.ndarray, max_distance: int, k: int) -> np.ndarray:
    """(probe, code, distance) rows of each probe's k nearest codes within the radius, in (probe, code) order,
    probes numbered from 0: the direct tables rank them in one sort, FAISS's indexes by a range search."""
    from auditor.similarity.multi_index import DirectMultiIndex

    if isinstance(index, DirectMultiIndex):
        return index.nearest(probes, max_distance, k)
    return _range(index, probes, max_distance, reduce=lambda rows: nearest_per_probe(rows, k), threads=1)


def _nearest_everywhere(index, n_codes: int, probes: np.ndarray, max_distance: int, k: int, keep) -> np.ndarray:
    """`_index_nearest` of every probe (`n_codes`: how many the index holds), in chunks of HAMMING_CHUNK probes on
    every core, `keep` applied to each chunk's rows (probe numbers global) as they are found. Where many probes
    share a code (`_grouped_by_code`) the chunks are cut from the probes in code order and each distinct code is
    searched once: a probe's result depends on its code only."""
    from auditor.parallel import run_blocks

    words = probes.view(np.uint64).reshape(-1) if probes.shape[1] == 8 else None
    by_code = _grouped_by_code(words)
    size = HAMMING_CHUNK
    found: dict[int, np.ndarray] = {}

    def search(start: int) -> None:
        if by_code is None:
            rows = _index_nearest(index, probes[start:start + size], max_distance, k)
            rows[:, 0] += start
        else:
            rows_of = by_code[start:start + size]
            first = np.ones(len(rows_of), dtype=bool)
            first[1:] = words[rows_of[1:]] != words[rows_of[:-1]]
            distinct = _index_nearest(index, probes[rows_of[first]], max_distance, k)
            rows = _given_to_probes(distinct, np.cumsum(first) - 1, rows_of)
        found[start] = keep(rows)

    starts = range(0, len(probes), size)
    run_blocks(search, starts)
    result = np.concatenate([found[start] for start in starts])
    if by_code is not None:  # back in (probe, code) order
        result = result[np.argsort(result[:, 0].astype(np.int64) * n_codes + result[:, 1], kind="stable")]
    return result


def _given_to_probes(rows: np.ndarray, code_of_probe: np.ndarray, probe_numbers: np.ndarray) -> np.ndarray:
    """Rows found for distinct codes (first column: the code's number, ascending) given to the probes that have
    them: probe i, numbered probe_numbers[i], has code number code_of_probe[i]. Ordered as the probes are listed."""
    lims = np.searchsorted(rows[:, 0], np.arange(len(probe_numbers) + 1))
    counts = lims[code_of_probe + 1] - lims[code_of_probe]
    run_begins = np.cumsum(counts) - counts
    out = rows[np.repeat(lims[code_of_probe] - run_begins, counts) + np.arange(int(counts.sum()))]
    out[:, 0] = np.repeat(probe_numbers, counts)
    return out


def hamming_nearest(codes: np.ndarray, probes: np.ndarray, max_distance: int, k: int, reduce=None,
                    quality: list | None = None) -> np.ndarray:
    """(probe, code, distance) rows, ordered by probe then code: each probe's k nearest codes within
    `max_distance` bits (ties: the lower code), `reduce` applied to each chunk of them as found.

    Complete below HAMMING_APPROXIMATE_FROM codes (flat up to HAMMING_EXACT_LIMIT, multi-index hashing above), in
    chunks on every core. From it on, HAMMING_QUALITY_SAMPLE seeded probes are searched completely first, then by
    multi-index tables planned for one bit less than the radius (several times cheaper; complete within
    max_distance − 1 bits); where those find TARGET_RECALL of the sample's matches they search every probe, else
    the complete search does. Measured after `reduce` (what the caller keeps); only probes with a match count. With
    `quality` (a list) a SearchQuality is appended: the method that ran and, when approximate, its recall (the mean
    over probes) and the share of all the sample's matches found (lower where probes with many matches lose more).
    Fewer probes than the sample: the complete search of all is the answer."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    probes = np.ascontiguousarray(probes, dtype=np.uint8)
    keep = (lambda rows: rows) if reduce is None else reduce
    if not len(codes) or not len(probes):
        return np.zeros((0, 3), dtype=np.int64)
    k = min(k, len(codes))
    exact_index, exact_method = _hamming_index(codes, max_distance)
    exact_method = exact_method if exact_method.startswith("exact") else f"exact: {exact_method}"

    def record(method: str, **measured) -> None:
        if quality is not None:
            quality.append(SearchQuality("hamming_nearest", method, len(codes), max_distance, **measured))

    if len(codes) < HAMMING_APPROXIMATE_FROM:
        record(exact_method)
        return _nearest_everywhere(exact_index, len(codes), probes, max_distance, k, keep)
    chosen = np.sort(np.random.default_rng(0).choice(len(probes), min(len(probes), HAMMING_QUALITY_SAMPLE),
                                                     replace=False))

    def sample_rows(index) -> np.ndarray:
        rows = _index_nearest(index, probes[chosen], max_distance, k)
        rows[:, 0] = chosen[rows[:, 0]]  # global probe numbers, still in order: `chosen` is sorted
        return keep(rows)

    truth = sample_rows(exact_index)
    if len(chosen) == len(probes):  # the sample is every probe: its complete search is the answer
        record(f"{exact_method}; every probe (fewer than the quality sample)")
        return truth
    bits = codes.shape[1] * 8
    plan = _multi_hash_plan(len(codes), bits, max_distance - 1) if max_distance else None
    cheaper = (plan is not None and len(codes) > HAMMING_EXACT_LIMIT
               and plan != _multi_hash_plan(len(codes), bits, max_distance))
    if not cheaper:  # the tables for one bit less would be the same (or a flat search): nothing to gain
        record(exact_method)
        return _nearest_everywhere(exact_index, len(codes), probes, max_distance, k, keep)
    reduced, reduced_method = _hamming_index(codes, max_distance - 1)
    got = sample_rows(reduced)
    recall, interval, with_matches = _probe_recall(truth, got)
    tied, _tied_interval, _ = _probe_recall(truth, got, up_to_ties=True)
    measured = {"probes_with_matches": with_matches, "recall_up_to_ties": None if tied is None else round(tied, 4),
                "matches_found": None if not len(truth) else round(float(_found_rows(truth, got).mean()), 4)}
    if tied is not None and tied < TARGET_RECALL:  # not enough on these codes: the complete search, and why
        record(f"{exact_method}; the tables for {max_distance - 1} bits found {tied:.3f} of the sampled matches, "
               f"below {TARGET_RECALL}")
        return _nearest_everywhere(exact_index, len(codes), probes, max_distance, k, keep)
    record(f"approximate: {reduced_method}, searched within {max_distance} bits: the {k} nearest", exact=False,
           recall=recall, recall_interval=interval, queries_measured=len(chosen),
           parameters={"tables": plan[0], "table_bits": plan[1], "flips": plan[2], "k": k, "seed": 0, **measured})
    return _nearest_everywhere(reduced, len(codes), probes, max_distance, k, keep)


def _grouped_by_code(words: np.ndarray | None) -> np.ndarray | None:
    """The probes ordered by their code (one 64-bit word each), where at least REPEATED_CODES_SHARE of them repeat
    another probe's code: searched in that order, each code once. Else None (searched as they come): ordering costs
    a sort of the probes and one of the matches found."""
    if words is None or len(words) < 2:
        return None
    order = np.argsort(words, kind="stable")
    ordered = words[order]
    repeated = np.count_nonzero(ordered[1:] == ordered[:-1])
    return order if repeated >= REPEATED_CODES_SHARE * len(words) else None


def _probe_recall(truth: np.ndarray, got: np.ndarray, up_to_ties: bool = False
                  ) -> tuple[float | None, list[float] | None, int]:
    """Mean share of each probe's exact matches (`truth` rows: probe, code, distances…) that `got` holds, its
    interval, and how many probes have a match (None, None, 0 where none has); which matches count: `_found_rows`."""
    if not len(truth):
        return None, None, 0
    probes, at = np.unique(truth[:, 0], return_inverse=True)
    per_probe = np.bincount(at, weights=_found_rows(truth, got, up_to_ties)) / np.bincount(at)
    recall, interval = _interval(per_probe)
    return recall, interval, len(probes)


def _found_rows(truth: np.ndarray, got: np.ndarray, up_to_ties: bool = False) -> np.ndarray:
    """Whether `got` holds each row of `truth` (bool per row). `up_to_ties`: a match counts as found where `got`
    holds, for the same probe, another code at the same distances (in place of one exact search kept among codes
    tied at the cut)."""
    from auditor.similarity.evidence import pair_key

    columns = [1] if not up_to_ties else list(range(2, truth.shape[1]))
    spans = [int(max(truth[:, c].max(), got[:, c].max() if len(got) else 0)) + 1 for c in columns]

    def key(rows: np.ndarray) -> np.ndarray:  # (probe, the columns compared) as one int64, mixed radix
        out = rows[:, 0]
        for column, span in zip(columns, spans):
            out = pair_key(out, rows[:, column], span)
        return out

    wanted, have = key(truth), key(got)
    if not up_to_ties:
        return np.isin(wanted, have)
    # the j-th row of a (probe, distances) key is found where `got` holds at least j of that key
    order = np.argsort(wanted, kind="stable")
    ordered = wanted[order]
    occurrence = np.arange(len(ordered)) - np.searchsorted(ordered, ordered, side="left")
    have = np.sort(have)
    available = np.searchsorted(have, ordered, side="right") - np.searchsorted(have, ordered, side="left")
    hit = np.empty(len(wanted), dtype=bool)
    hit[order] = occurrence < available
    return hit
