"""Candidate pairs and the evidence on each, the same way for dataset images and for calibration copies.

Every query image (a dataset image, or a transformed copy made for calibration) is compared with a few
dataset images only, O(n·k) in all:
  - its `CANDIDATES` nearest neighbours by embedding cosine (FAISS),
  - on small images (and without embeddings) only: its nearest neighbours by pixel likeness (standardised
    8×8 block means, FAISS; as is and mirrored a dataset image is as close as the best of its own and five crops'
    descriptors, pixels.crop_descriptors) as it is and mirrored (`PIXEL_CANDIDATES` each) and under each of the 6
    rotations (`ROTATED_CANDIDATES`): on tiny images the embedding ranks a re-cropped copy below look-alikes
    now and then, and a rotated copy often (bench/bench_truth.py, planted leaks: 32 px cats/dogs recall
    0.84 → 0.88, 64 px 0.90 → 0.92). On full-size photos they trade precision for rotated copies:
    cats/dogs 0.95 / 1.00 → 1.00 / 0.97 (recall / precision; the false ones align at 0.90 while the
    embedding says unrelated), hymenoptera 0.93 / 1.00 → 0.87 / 0.72 with one set of calibration copies
    and no change with another (the look-alike pairs can pull the rule chosen there loose). So full-size
    images keep the embedding's candidates, the nearest one tried under every rotation, and
  - the images whose pHash and dHash are within the user's thresholds under any of the 8 rotations and
    mirrorings of the query (FAISS binary index), at most `HASH_CANDIDATES` per variant, the closest.

On each candidate pair three numbers are measured:
  - `cosine` of the embeddings;
  - `scaled`: the cosine relative to how similar the two images' neighbourhoods are,
    (cos − b) / (1 − b) with b the mean of both images' `BACKGROUND_RANK`-th neighbour cosine. A pair of
    silver cars in a crowd of silver cars has a high cosine but a low scaled cosine; a copy stands out
    from its partner's neighbourhood wherever it is;
  - `correlation`: the Pearson correlation of the two 32×32 grey thumbnails after the best small shift
    and zoom (pixels.screened_correlation), as is and mirrored, under the rotation a pixel or hash
    candidate was found under, and (without pixel candidates) under all 8 for the nearest neighbour;
  - `relative_correlation` (once every pair is measured: `relate_to_backgrounds`): the correlation relative to how
    well the two images align with their other candidates, as the scaled cosine is for embeddings. An edge
    between two flat tones aligns at 0.98 with hundreds of unrelated images once turned, a detailed photo at
    0.6–0.8 with its look-alikes; a copy stands out from either's background.

Using one function for dataset images and for copies keeps the copies' evidence, and so the recall and
false-match rates measured on them, comparable with the dataset's own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from auditor.memory import random_access
from auditor.similarity import pixels as px

if TYPE_CHECKING:
    from auditor.similarity.crowds import Crowds

CANDIDATES = 5  # nearest neighbours per image examined as candidate duplicates
BACKGROUND_RANK = 10  # the neighbour whose cosine describes how crowded an image's neighbourhood is
# The candidate (by aligned correlation, 1-based) whose correlation describes how well an image aligns with images
# that are not its copies: the third, so that an image with two duplicates still has a background of look-alikes.
# Replayed on dumped decisions (bench/decision_replay.py; scaled by the dataset's median background then, before
# BACKGROUND_MAX_SCALED): 50 000 32 px tiles with 2 % planted leaks, leak recall / precision 0.82 / 0.96 at the
# second, 0.77 / 0.96 at the third, 0.74 / 0.94 at the fifth; on the 25-image set (a photo with three copies) the
# second made another copy the background of a tenth of the true pairs (their scaled correlation 0.08 and less).
PIXEL_BACKGROUND_RANK = 3
BACKGROUND_MAX_SCALED = 0.4  # partners at least this close by scaled cosine are the same picture, not background
# The background at which the relative correlation equals the correlation itself: how well a photo's look-alikes
# align (32 px cats/dogs: median 0.69 over images; full-size hymenoptera 0.44–0.56). A constant, not the dataset's
# median: where most images are copies of a few pictures the median is a copy's correlation.
TYPICAL_PIXEL_BACKGROUND = 0.7
PIXEL_CANDIDATES = 3  # nearest by pixel likeness, as is and mirrored
ROTATED_CANDIDATES = 1  # … and under each rotation
# Hash matches kept per image and variant, the closest first: on photos an image matches at most 13 others
# (digits at 32 px; photos ≤ 2, every truth row of bench/bench_truth.py), so this keeps them all there; where a
# dataset is hundreds of copies of each picture it keeps the candidate pairs — and their pixel work — linear.
HASH_CANDIDATES = 16
HASH_SEARCHED = 32  # nearest by pHash searched per image and variant, before dHash and the cap above
EXACT_PIXEL_SEARCH = 20_000  # above this many images the pixel search is approximate (FAISS IVF)
PIXEL_NPROBE = 16  # IVF cells searched per query above that
PIXEL_LISTS_PER_ROOT = 4  # IVF cells: this many times √rows
PIXEL_TRAIN_PER_LIST = 40  # rows sampled per cell to train the cells (FAISS asks for 39 at least)
PIXEL_TRAIN_ITERATIONS = 10  # k-means iterations training them
PIXEL_INDEX_CHUNK = 65_536  # images whose descriptors are made and indexed at a time


@dataclass
class Dataset:
    """What the search needs about the dataset's images (node order)."""

    unit: np.ndarray | None  # (n, d) unit embeddings, or None: no embedding tier
    thumbs: np.ndarray  # (n, 32, 32) uint8 grey thumbnails
    phash: np.ndarray  # (n, 8) uint8 pHash codes of the thumbnails (identity)
    dhash: np.ndarray  # (n, 8) uint8
    background: np.ndarray  # (n,) cosine of each image's BACKGROUND_RANK-th neighbour (0 without embeddings)
    # (n, DESCRIPTORS_PER_IMAGE · 64): block descriptors of each image and its crops (pixels.crop_descriptors), up to
    # EXACT_PIXEL_SEARCH images; above, only `pixel_index` holds them
    descriptors: np.ndarray | None = None
    neighbours: tuple[np.ndarray, np.ndarray] | None = None  # self k-NN by embedding (sims, labels), reused
    crowds: "Crowds | None" = None  # the images in a crowd of copies and their fellow members (`crowd_backgrounds`)
    # above EXACT_PIXEL_SEARCH: FAISS indexes over the descriptor rows with crops and without, each built once
    pixel_index: object | None = None
    plain_pixel_index: object | None = None
    pixel_candidates: bool = True  # search by pixel likeness too (small images, or no embeddings)
    memo: object | None = None  # pixel_memo.PixelMemo: pixel evidence remembered across audits, or None
    grey: np.ndarray | None = None  # (n,) bool: the image has no colour (see Pairs.colour_differs), or None: unknown
    # (n,) each image's pixel background (`pixel_backgrounds`); None until the candidate pairs are measured
    # (`relate_to_backgrounds`), without embeddings, and where the user fixed the correlation threshold
    pixel_background: np.ndarray | None = None

    def colour_differs(self, a: np.ndarray, b: np.ndarray, a_grey: np.ndarray | None = None) -> np.ndarray | None:
        """Per pair (a, b) of nodes, or of queries a (whose greyness is `a_grey`) and nodes b: one grey, the other
        not. None where the dataset's greyness is not known."""
        if self.grey is None:
            return None
        return (self.grey[a] if a_grey is None else np.asarray(a_grey, dtype=bool)[a]) != self.grey[b]


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
    # bool: one image of the pair is grey, the other in colour (their embeddings then differ whatever they show);
    # None where not known (every pair taken as both in colour or both grey)
    colour_differs: np.ndarray | None = None
    # the correlation relative to both images' pixel backgrounds (`relative_correlation`); None: not measured, the
    # pixel tier then reads the correlation itself
    relative_correlation: np.ndarray | None = None
    # bool per pair: the same picture by pixels, hashes and embeddings at once (`same_picture`); None: not measured
    same_picture: np.ndarray | None = None
    # bool per pair: one image is a member of the other's crowd of copies (crowds.crowd_backgrounds); None: no crowd
    crowd_mate: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.query)

    @property
    def pixel_score(self) -> np.ndarray:
        """What the pixel tier's thresholds apply to: the relative correlation where measured, else the correlation."""
        return self.correlation if self.relative_correlation is None else self.relative_correlation

    def subset(self, mask: np.ndarray) -> "Pairs":
        return Pairs(**{name: None if getattr(self, name) is None else getattr(self, name)[mask]
                        for name in self.__dataclass_fields__})


# Thumbnails per call of a per-thumbnail function, one call per thread at a time. The block descriptors with crops
# hold ≈ 10 KB of float32 temporaries a thumbnail: at 32 768 the two threads' calls held 0.5 GB, the duplicate
# decision's peak on 2·10⁵ 32 px crops once pHash's own temporaries were bounded (memray); at 4 096, 80 MB. The
# results do not depend on it (rows are independent; checked bit for bit on 70 000 random thumbnails).
CODE_CHUNK = 4_096


def _chunked(function, thumbs: np.ndarray, width: int, dtype) -> np.ndarray:
    """function(thumbs) computed at most CODE_CHUNK thumbnails at a time (at 10⁶ thumbnails the float
    temporaries of one call would take gigabytes), the chunks on every core (parallel.run_blocks: one BLAS
    thread each, as the hashes are many tiny matrix products: dHash of 20 000 thumbnails took 24 µs each with
    BLAS threads, 5 µs without, under load). Rows are independent: the result is that of one call."""
    from auditor.parallel import block_size, run_blocks

    out = np.empty((len(thumbs), width), dtype=dtype)
    chunk = block_size(len(thumbs), CODE_CHUNK)

    def compute(start: int) -> None:
        out[start:start + chunk] = function(np.ascontiguousarray(thumbs[start:start + chunk]))

    run_blocks(compute, range(0, len(thumbs), chunk))
    return out


def dihedral_codes(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pHash and dHash codes of every thumbnail under the 8 variants: two (8, n, 8) uint8 arrays."""
    phash = np.empty((8, len(thumbs), 8), dtype=np.uint8)
    dhash = np.empty((8, len(thumbs), 8), dtype=np.uint8)
    for v in range(8):
        # Each chunk turned as it is hashed: turning all thumbnails first held a copy of them per variant (1 GB
        # at 10⁶ images).
        turned = lambda function, v=v: lambda chunk: function(np.ascontiguousarray(px.dihedral(chunk, v)))
        phash[v] = _chunked(turned(px.phash_codes), thumbs, 8, np.uint8)
        dhash[v] = _chunked(turned(px.dhash_codes), thumbs, 8, np.uint8)
    return phash, dhash


def make_dataset(unit: np.ndarray | None, thumbs: np.ndarray, small_images: bool = False, memo=None,
                 grey: np.ndarray | None = None) -> Dataset:
    """`small_images`: the dataset's images are small (similarity/input_size.py `are_small`): candidates are
    searched by pixel likeness as well as by embedding. Without embeddings pixel likeness is the only search.
    `grey`: bool per image, no colour (or None: not known)."""
    from auditor.similarity.neighbours import knn

    thumbs = np.ascontiguousarray(thumbs, dtype=np.uint8)
    phash, dhash = _chunked(px.phash_codes, thumbs, 8, np.uint8), _chunked(px.dhash_codes, thumbs, 8, np.uint8)
    background = np.zeros(len(thumbs), dtype=np.float32)
    neighbours = crowds = None
    if unit is not None and len(unit) >= 2:
        from auditor.similarity.crowds import crowd_backgrounds

        # One self-search serves the background and, later, the dataset's own candidates.
        neighbours = knn(unit, min(len(unit), max(CANDIDATES, BACKGROUND_RANK) + 1))
        background, crowds = crowd_backgrounds(unit, unit, neighbours, np.arange(len(unit)), neighbours[1])
    pixel_candidates = small_images or unit is None
    # Block descriptors only where pixel likeness is searched (256 MB and seconds at 10⁶ images otherwise).
    # Above EXACT_PIXEL_SEARCH images they go straight into an index (`pixel_neighbours`), in chunks.
    descriptors = (_chunked(px.crop_descriptors, thumbs, 64 * px.DESCRIPTORS_PER_IMAGE, np.float32)
                   if pixel_candidates and len(thumbs) <= EXACT_PIXEL_SEARCH else None)
    return Dataset(unit=unit, thumbs=thumbs, phash=phash, dhash=dhash, background=background,
                   descriptors=descriptors, neighbours=neighbours, crowds=crowds, pixel_candidates=pixel_candidates,
                   memo=memo, grey=None if grey is None else np.asarray(grey, dtype=bool))


PIXEL_SEARCH_BLOCK = 65_536  # queries searched in the pixel IVF index at a time


class TurnedDescriptors:
    """The block descriptors of thumbnails under one dihedral variant, made for the rows asked for
    (`descriptors[rows]`, rows a slice or indices), never all at once: at 10⁶ queries they are 256 MB, and the
    pixel search, which reads them a block at a time, was the duplicate decision's peak while they were whole."""

    def __init__(self, thumbs: np.ndarray, variant: int):
        self.thumbs, self.variant = thumbs, variant

    def __len__(self) -> int:
        return len(self.thumbs)

    def __getitem__(self, rows) -> np.ndarray:
        return _chunked(px.block_descriptors, px.dihedral(self.thumbs[rows], self.variant), 64, np.float32)


def pixel_neighbours(data: Dataset, queries: "np.ndarray | TurnedDescriptors", k: int,
                     crops: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The k dataset images nearest to each query descriptor: (sims, labels), labels −1 past the images there are.
    With `crops` an image is as near as the best of its own and its crops' descriptors, without by its own only.
    Exact up to EXACT_PIXEL_SEARCH images, above that a FAISS IVF index (a copy's descriptor is close to its
    source's, so they share a cell), searched PIXEL_SEARCH_BLOCK queries at a time (`queries` may make its
    descriptors a block at a time: `TurnedDescriptors`)."""
    if len(data.thumbs) <= EXACT_PIXEL_SEARCH:
        queries = np.ascontiguousarray(queries[:len(queries)], dtype=np.float32)  # all at once (made here if lazy)
        return _exact_pixel_search(data.descriptors if crops else data.descriptors[:, :64], queries, k)
    per_image = px.DESCRIPTORS_PER_IMAGE if crops else 1
    if crops and data.pixel_index is None:
        data.pixel_index = _pixel_ivf(data.thumbs, crops=True)
    if not crops and data.plain_pixel_index is None:
        data.plain_pixel_index = _pixel_ivf(data.thumbs, crops=False)
    index = data.pixel_index if crops else data.plain_pixel_index
    out_sims = np.empty((len(queries), k), dtype=np.float32)
    out_labels = np.empty((len(queries), k), dtype=np.int64)
    # Queries a block at a time: the k·per_image rows of all 10⁶ queries at once held 0.29 GB, and as much again
    # while they were reduced to distinct images.
    for start in range(0, len(queries), PIXEL_SEARCH_BLOCK):
        # An image has at most `per_image` rows, so its k·per_image nearest rows hold at least k distinct images.
        block = np.ascontiguousarray(queries[start:start + PIXEL_SEARCH_BLOCK], dtype=np.float32)
        sims, rows = index.search(block, k * per_image)
        # Rows to images in place (−1, a missing row, stays −1 under floor division).
        part = slice(start, start + len(sims))
        out_sims[part], out_labels[part] = nearest_distinct(sims, np.floor_divide(rows, per_image, out=rows), k)
    return out_sims, out_labels


PIXEL_QUALITY_SAMPLE = 1_000  # queries whose approximate pixel neighbours are checked against exact search


def pixel_search_quality(data: Dataset, queries: "np.ndarray | TurnedDescriptors", found: np.ndarray,
                         self_nodes: np.ndarray, crops: bool = True):
    """How many of the exact pixel neighbours the approximate search found (`found`: its labels for every query,
    `queries` their descriptors, of which only the sample's are read; `crops`: which index, as in
    `pixel_neighbours`), on PIXEL_QUALITY_SAMPLE seeded queries: a neighbours.SearchQuality. The exact neighbours
    come from the thumbnails' descriptors made again a chunk at a time (the index keeps 8-bit rows)."""
    from auditor.similarity.neighbours import SearchQuality, _interval

    k = found.shape[1]
    chosen = np.sort(np.random.default_rng(0).choice(len(queries), min(len(queries), PIXEL_QUALITY_SAMPLE),
                                                     replace=False))
    sample = np.ascontiguousarray(queries[chosen], dtype=np.float32)
    best_sims = np.full((len(chosen), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(chosen), 0), dtype=np.int64)
    per_image = px.DESCRIPTORS_PER_IMAGE if crops else 1
    function = px.crop_descriptors if crops else px.block_descriptors
    for start in range(0, len(data.thumbs), PIXEL_INDEX_CHUNK):
        part = _chunked(function, data.thumbs[start:start + PIXEL_INDEX_CHUNK], 64 * per_image, np.float32)
        sims, rows = _exact_pixel_search(part, sample, k)
        best_sims = np.concatenate([best_sims, sims], axis=1)
        best_rows = np.concatenate([best_rows, np.where(rows >= 0, rows + start, -1)], axis=1)
        top = np.argsort(-best_sims, axis=1, kind="stable")[:, :k]
        best_sims, best_rows = np.take_along_axis(best_sims, top, axis=1), np.take_along_axis(best_rows, top, axis=1)
    per_query = []
    for row, query in enumerate(chosen):  # a thousand small sets: the query itself is no neighbour
        wanted = set(best_rows[row].tolist()) - {-1, int(self_nodes[query])}
        if wanted:
            per_query.append(len(wanted & set(found[query].tolist())) / len(wanted))
    lists = (data.pixel_index if crops else data.plain_pixel_index).nlist
    rows = "the best of each image's block descriptor and five crops'" if crops else "each image's block descriptor"
    # k − 1: the nearest other images (the query itself is among its k nearest)
    record = SearchQuality("pixel_knn", f"approximate: FAISS IVF, 8-bit rows ({lists} lists, {PIXEL_NPROBE} searched "
                           f"per query), by {rows}", len(data.thumbs), k - 1, exact=False)
    if per_query:
        record.recall, record.recall_interval = _interval(np.array(per_query))
    record.queries_measured = len(chosen)
    record.parameters = {"lists": lists, "nprobe": PIXEL_NPROBE, "k": k - 1, "seed": 0, "rows_per_image": per_image}
    return record


def _pixel_ivf(thumbs: np.ndarray, crops: bool):
    """A FAISS IVF inner-product index over the descriptor rows of every thumbnail (with `crops` row
    image·DESCRIPTORS_PER_IMAGE + crop, without row image), PIXEL_LISTS_PER_ROOT·√rows cells of which PIXEL_NPROBE
    are searched, rows stored as 8-bit scalars: 72 bytes a row with its id, 0.43 GB for 6·10⁶ rows, where float32
    rows would take 1.6 GB and their array as much again while the index was filled (computed, not measured at
    10⁶). Filled a chunk of images at a time.

    Measured on 50 399 32 px tiles (recall of the 3 nearest other images against exact search, index + search
    seconds for 8 rotations on 2 cores, all with crops as the first version searched): 4·√rows cells, 16 searched, 50 rows a cell and 25 iterations: 0.895, 9.8 +
    12.5 s; 40 rows and 10 iterations: 0.900, 8.6 + 13.0 s (at 200 000 thumbnails 48 → 40 s to build); 2·√rows
    cells, 16 searched: 0.911, 3.4 + 18.1 s, but at 200 000 thumbnails 16 + 138 s against 40 + 92 s; 8 searched:
    0.854; 1·√rows and 4 searched: 0.800."""
    import faiss

    per_image = px.DESCRIPTORS_PER_IMAGE if crops else 1
    function = px.crop_descriptors if crops else px.block_descriptors
    describe = lambda images: _chunked(function, images, 64 * per_image, np.float32).reshape(-1, 64)
    lists = int(PIXEL_LISTS_PER_ROOT * np.sqrt(len(thumbs) * per_image))
    wanted = min(len(thumbs), -(-PIXEL_TRAIN_PER_LIST * lists // per_image))  # images, each giving per_image rows
    sample = np.random.default_rng(0).choice(len(thumbs), wanted, replace=False)
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(64), 64, lists, faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = PIXEL_TRAIN_ITERATIONS
    index.train(describe(thumbs[np.sort(sample)]))
    index.nprobe = PIXEL_NPROBE
    for start in range(0, len(thumbs), PIXEL_INDEX_CHUNK):
        index.add(describe(thumbs[start:start + PIXEL_INDEX_CHUNK]))
    return index


def _exact_pixel_search(descriptors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`pixel_neighbours` by matrix products, a block of queries per core: each image's similarity is the best of
    its rows (`descriptors`: (n, rows · 64)), then a partial sort (ties: the lower image first). FAISS's flat search over the rows, then keeping
    distinct images, took 51 s where this takes 21 s (20 000 32 px tiles, 8 variants, 2 cores)."""
    from auditor.parallel import run_blocks

    n, per_image = len(descriptors), descriptors.shape[1] // 64
    # One contiguous (n, 64) matrix per crop: the best of them is a running maximum over contiguous products.
    crops = [np.ascontiguousarray(descriptors[:, c * 64:(c + 1) * 64], dtype=np.float32) for c in range(per_image)]
    found = min(k, n)
    sims = np.full((len(queries), k), -np.inf, dtype=np.float32)
    labels = np.full((len(queries), k), -1, dtype=np.int64)
    if not n or not len(queries):
        return sims, labels
    block = int(np.clip((1 << 22) // n, 16, 1024))  # queries at a time: ≈ 16 MB of similarities

    def search(start: int) -> None:
        part = queries[start:start + block]
        best = part @ crops[0].T
        for crop in crops[1:]:
            np.maximum(best, part @ crop.T, out=best)
        top = (np.argpartition(-best, found - 1, axis=1)[:, :found] if found < n
               else np.broadcast_to(np.arange(n), best.shape))
        values = np.take_along_axis(best, top, axis=1)
        order = np.lexsort((top, -values), axis=1)
        sims[start:start + len(best), :found] = np.take_along_axis(values, order, axis=1)
        labels[start:start + len(best), :found] = np.take_along_axis(top, order, axis=1)

    run_blocks(search, range(0, len(queries), block))
    return sims, labels


def nearest_distinct(sims: np.ndarray, owners: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row (sorted best first), the first k distinct owners (≥ 0) and their best similarity: (sims, owners),
    padded with −inf and −1."""
    width = owners.shape[1]
    earlier = np.tril(np.ones((width, width), dtype=bool), k=-1)  # [i, j]: column j comes before column i
    keep = owners >= 0
    for start in range(0, len(owners), 65_536):  # rows × width² comparisons: 0.6 GB at 10⁶ queries in one go
        part = owners[start:start + 65_536]
        keep[start:start + 65_536] &= ~((part[:, :, None] == part[:, None, :]) & earlier[None]).any(axis=2)
    rank = np.cumsum(keep, axis=1)  # 1-based among the kept columns; dropping those past k leaves the rest's
    keep &= rank <= k
    out_sims = np.full((len(owners), k), -np.inf, dtype=np.float32)
    out_owners = np.full((len(owners), k), -1, dtype=np.int64)
    rows, columns = np.nonzero(keep)
    slot = rank[rows, columns] - 1
    out_sims[rows, slot], out_owners[rows, slot] = sims[rows, columns], owners[rows, columns]
    return out_sims, out_owners


def _backgrounds(sims: np.ndarray, labels: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """Per row: the cosine of the BACKGROUND_RANK-th neighbour (or the last one, if fewer) that is not missing
    (-1) nor the row's own node `exclude[row]`; 0 where there is none. Rows at once: 10⁶ at scale."""
    if not len(labels):
        return np.zeros(0, dtype=np.float32)
    others = (labels >= 0) & (labels != np.asarray(exclude)[:, None])
    count = others.sum(axis=1)
    wanted = np.minimum(BACKGROUND_RANK, count)  # 1-based position among the others
    position = np.argmax(others & (np.cumsum(others, axis=1) == wanted[:, None]), axis=1)
    picked = np.take_along_axis(sims, position[:, None], axis=1)[:, 0]
    return np.where(count > 0, picked, 0.0).astype(np.float32)


def scaled_cosine(cosine: np.ndarray, background_a: np.ndarray, background_b: np.ndarray) -> np.ndarray:
    b = np.clip((background_a + background_b) / 2.0, -1.0, 0.999)
    return (cosine - b) / (1.0 - b)


BACKGROUND_LEVELS = 32_767  # correlations are ranked for the background in steps of 2 / this (6·10⁻⁵)
BACKGROUND_CHUNK = 1 << 20  # pair ends keyed at a time


def pixel_backgrounds(n: int, *ends: tuple[np.ndarray, ...]) -> np.ndarray:
    """Per node 0 … n−1, the correlation of its PIXEL_BACKGROUND_RANK-th best aligned candidate (or its worst, with
    fewer; NaN without any). Each of `ends` is (nodes, correlation, scaled[, same]) over pairs: node `nodes[i]` is an
    end of a pair aligned at `correlation[i]`, whose scaled cosine is `scaled[i]`. Partners the embeddings call the
    same picture (scaled cosine ≥ BACKGROUND_MAX_SCALED), and those `same[i]` calls so (`same_picture`), are left
    out: a picture stored five times would otherwise have its own copies as background. The candidates are the images most alike by embedding, pixels and hashes, so
    this is how well the image aligns with its look-alikes.

    One sort of int64 keys (node, then correlation quantised in BACKGROUND_LEVELS steps, best first), not an
    argsort of two columns: at 10⁶ images (2.8·10⁷ pair ends, random) that took 0.8 GB and 21 s, this 0.24 GB and 2 s."""
    key = np.empty(sum(len(end[0]) for end in ends), dtype=np.int64)
    filled = 0
    for nodes, correlation, scaled, *same in ends:
        for start in range(0, len(nodes), BACKGROUND_CHUNK):  # chunks: the temporaries stay small at 10⁶ images
            part = slice(start, start + BACKGROUND_CHUNK)
            other = np.asarray(scaled[part]) < BACKGROUND_MAX_SCALED
            if same:
                other &= ~np.asarray(same[0][part], dtype=bool)
            aligned = np.nan_to_num(np.asarray(correlation[part], dtype=np.float32)[other], nan=-1.0)
            worse = np.round((1.0 - np.clip(aligned, -1.0, 1.0))
                             * (BACKGROUND_LEVELS / 2.0)).astype(np.int64)  # 0: a perfect alignment
            taken = len(worse)
            key[filled:filled + taken] = (np.asarray(nodes[part], dtype=np.int64)[other] << 16) | worse
            filled += taken
    key = key[:filled]
    out = np.full(n, np.nan, dtype=np.float32)
    if not filled:
        return out
    key.sort()
    bounds = np.searchsorted(key, np.arange(n + 1, dtype=np.int64) << 16)  # each node's run of keys
    starts, counts = bounds[:-1], np.diff(bounds)
    has = counts > 0
    picked = key[starts[has] + np.minimum(PIXEL_BACKGROUND_RANK, counts[has]) - 1] & 0xFFFF
    out[has] = 1.0 - picked * (2.0 / BACKGROUND_LEVELS)
    return out


def relative_correlation(correlation: np.ndarray, background_a: np.ndarray, background_b: np.ndarray) -> np.ndarray:
    """The aligned correlation relative to both images' pixel backgrounds b (their mean): (c − b) / (1 − b), the
    scaled cosine's form, expressed on the scale of an image whose background is TYPICAL_PIXEL_BACKGROUND (b₀):
    b₀ + (1 − b₀)·(c − b)/(1 − b) = 1 − (1 − c)·(1 − b₀)/(1 − b). For such an image it is the correlation itself,
    so the correlation grid and the tests on it (decision.py) keep their meaning; an image that aligns with
    everything needs a near-perfect alignment to reach them. A background below b₀ counts as b₀; a missing one
    (NaN: no other candidate) too."""
    typical = TYPICAL_PIXEL_BACKGROUND
    b = (np.where(np.isnan(background_a), typical, background_a)
         + np.where(np.isnan(background_b), typical, background_b)) / 2
    # Never below the typical background: the bar only rises for images that align with everything. Without this,
    # low backgrounds among the 21 images of tests/e2e/test_hostile_input.py lifted an unrelated train/val pair
    # aligned at 0.66 to 0.81, above the 0.805 chosen there, and leaked it.
    b = np.clip(np.maximum(b, typical), -1.0, 0.999)
    return np.clip(1.0 - (1.0 - np.asarray(correlation)) * (1.0 - typical) / (1.0 - b), -1.0, 1.0).astype(np.float32)


def dataset_relative_correlation(data: Dataset, pairs: Pairs) -> np.ndarray | None:
    """The relative correlation of pairs of dataset images, from the backgrounds `relate_to_backgrounds` set on
    `data` (None before, or where it set none: the correlation itself is judged there)."""
    if data.pixel_background is None:
        return None
    return relative_correlation(pairs.correlation, data.pixel_background[pairs.query],
                                data.pixel_background[pairs.target])


AS_IS_VARIANTS = (0, 4)  # dihedral variants without a rotation: as is, mirrored
SAME_PICTURE_CORRELATION = 0.95  # aligned as is at least this well (the raw correlation), hashes matching, and …
SAME_PICTURE_KIND = "mirror_reencode"  # … an embedding as close as this kind of calibration copy's to its source


def reencode_cosine(copy_pairs: Pairs, copy_source: np.ndarray, copy_kind: list[str]) -> float | None:
    """The median cosine of the calibration copies of kind SAME_PICTURE_KIND (mirrored and re-encoded, nothing else)
    to their own source: how close this backbone puts two encodings of one picture on this dataset (0.92 on 3 000
    Fashion-MNIST images at 224 px, 0.88 on 25 000 at 96 px, 0.93 on 32 px tiles, 0.96 on digits and on photo
    frames). None without such a copy pair."""
    if not len(copy_pairs):
        return None
    kind = np.asarray(copy_kind)[copy_pairs.query]
    own = (np.asarray(copy_pairs.target) == np.asarray(copy_source)[copy_pairs.query]) & (kind == SAME_PICTURE_KIND)
    return float(np.median(copy_pairs.cosine[own])) if own.any() else None


def same_picture(pairs: Pairs, min_cosine: float | None) -> np.ndarray:
    """Pairs that are the same picture by their raw evidence alone, whatever the density-aware scores say: aligned as
    is or mirrored at SAME_PICTURE_CORRELATION or more, perceptual hashes matching, and a cosine of at least
    `min_cosine` (`reencode_cosine`; None: no pair is). Why raw: a picture stored many times (frames of one clip,
    burst shots, one photo re-uploaded) has its own copies as its BACKGROUND_RANK-th neighbours, so its scaled
    cosines collapse to ≈ 0, and its copies were its pixel background too, so its relative correlations collapsed
    with them (docs/duplicates.md, "A picture stored many times"). Why all three: on 28 px Fashion-MNIST, look-alike
    products on black align as is at ≥ 0.95 with matching hashes (105 of 38 170 candidate pairs), but at cosines (median 0.87)
    below two encodings of one picture (0.92)."""
    if min_cosine is None:
        return np.zeros(len(pairs), dtype=bool)
    same = np.asarray(pairs.hash_match, dtype=bool) & np.isin(pairs.variant, AS_IS_VARIANTS)
    with np.errstate(invalid="ignore"):  # a correlation not measured (NaN) is no alignment
        same &= np.asarray(pairs.correlation) >= SAME_PICTURE_CORRELATION
    same &= np.asarray(pairs.cosine) >= min_cosine
    return same


def copy_source_correlation(data: Dataset, copy_thumbs: np.ndarray, copy_source: np.ndarray,
                            copy_pairs: Pairs) -> np.ndarray:
    """Per calibration copy, its aligned correlation with its source as is or mirrored (how near-identical the copy is:
    decision.NEARNESS_EDGES). Where the search already measured the pair and an as-is or mirrored alignment was its
    best, that is the number (the search measures both for every pair); the rest — the source not a candidate, or
    aligned best rotated — are measured here (≈ 0.26 s for 500 copies of photos when none is known)."""
    out = np.full(len(copy_source), np.nan, dtype=np.float32)
    if len(copy_pairs):
        own = (copy_pairs.target == copy_source[copy_pairs.query]) & np.isin(copy_pairs.variant, AS_IS_VARIANTS)
        out[copy_pairs.query[own]] = copy_pairs.correlation[own]
    missing = np.flatnonzero(np.isnan(out))
    if len(missing):
        out[missing] = pair_correlation(copy_thumbs, missing, data.thumbs, copy_source[missing], -1,
                                        memo=data.memo)[0]
    return out


def relate_to_backgrounds(data: Dataset, pairs: Pairs, copy_pairs: Pairs, copy_source: np.ndarray,
                          copy_kind: list[str]) -> None:
    """Set each image's pixel background on `data` (from the dataset's candidate pairs, both ends), which pairs are
    the same picture (`same_picture`, on `pairs`) and the relative correlation of every pair in `pairs` and
    `copy_pairs` (a copy's background from its own candidates; `copy_source`, `copy_kind`: each copy's source node
    and kind). Only with embeddings: without them nothing tells a picture's copies from its look-alikes
    in its background, and the correlation itself is judged, as before."""
    if data.unit is None:
        return
    min_cosine = reencode_cosine(copy_pairs, copy_source, copy_kind)
    pairs.same_picture = same = same_picture(pairs, min_cosine)
    background = pixel_backgrounds(len(data.thumbs), (pairs.query, pairs.correlation, pairs.scaled, same),
                                   (pairs.target, pairs.correlation, pairs.scaled, same))
    data.pixel_background = background
    pairs.relative_correlation = dataset_relative_correlation(data, pairs)
    copy_same = same_picture(copy_pairs, min_cosine)
    copy_background = pixel_backgrounds(len(copy_source),
                                        (copy_pairs.query, copy_pairs.correlation, copy_pairs.scaled, copy_same))
    copy_pairs.relative_correlation = relative_correlation(copy_pairs.correlation, copy_background[copy_pairs.query],
                                                           background[copy_pairs.target])


def search(data: Dataset, query_unit: np.ndarray | None, query_thumbs: np.ndarray, max_phash: int, max_dhash: int,
           self_nodes: np.ndarray | None = None, candidates: int = CANDIDATES, quality: list | None = None,
           last_pixel_search: bool = False) -> Pairs:
    """Candidate pairs of each query with dataset images, with their evidence.

    `self_nodes[q]`: the dataset node that query q *is* (never its own candidate), or -1; None when the
    queries are not dataset images (calibration copies). `quality`: a list the SearchQuality of each approximate
    search is appended to: the pixel search's (above EXACT_PIXEL_SEARCH images), the hash search's (from
    neighbours.HAMMING_APPROXIMATE_FROM images on). `last_pixel_search`: no later search of `data` needs its
    pixel indexes, so they are dropped once this one's pixel candidates are found (at 10⁶ images ≈ 0.5 GB not held
    through the hash search and the comparisons)."""
    from auditor.similarity.neighbours import EXACT_LIMIT, knn, paired_cosines

    nq = len(query_thumbs)
    query_thumbs = np.ascontiguousarray(query_thumbs, dtype=np.uint8)
    symmetric = self_nodes is not None  # queries are the dataset's own images: keep each pair once
    self_nodes = np.full(nq, -1, dtype=np.int64) if self_nodes is None else np.asarray(self_nodes, dtype=np.int64)
    events: list[Sightings] = []  # in the order they are made: the first sighting of a pair sets its direction
    q_background = np.zeros(nq, dtype=np.float32)
    if data.unit is not None and query_unit is not None and len(data.unit) and nq:
        k = min(len(data.unit), max(candidates, BACKGROUND_RANK) + 1)
        reuse = (symmetric and data.neighbours is not None and data.neighbours[0].shape[1] >= k
                 and nq == len(data.unit) and np.array_equal(self_nodes, np.arange(nq)))
        sims, labels = data.neighbours if reuse else knn(data.unit, k, queries=query_unit)
        if reuse:
            q_background, crowds = data.background, data.crowds
        elif data.neighbours is None:  # no graph of the dataset's own (fewer than 2 images): no crowd either
            q_background, crowds = _backgrounds(sims, labels, self_nodes), None
        else:
            from auditor.similarity.crowds import crowd_backgrounds

            q_background, crowds = crowd_backgrounds(data.unit, query_unit, (sims, labels), self_nodes,
                                                     data.neighbours[1])
        q, j, rank = _first_valid(labels, self_nodes, candidates)
        # Above the exact-search limit each neighbour's cosine was computed on the stored rows by the search's exact
        # re-ranking: kept, not computed again per pair (3.2 M of the 13.3 M candidate pairs at 10⁶ images). Below
        # it the pairs' cosines are all computed one way (`paired_cosines`), the bits every truth row was measured on.
        kept = sims[q, _column_of(labels, self_nodes, candidates)] if len(data.unit) > EXACT_LIMIT else None
        events.append(Sightings.of(q, j, rank=rank, cosine=kept))
        if crowds is not None and crowds.members is not None:
            events.append(dataclasses.replace(crowds.members))  # a copy: merging releases its event's columns, and
            # the dataset's crowds are kept
    if data.pixel_candidates and len(data.thumbs) and nq:
        # Pixel-alike candidates: the query's descriptor under each variant against the dataset's as is.
        for variant in range(8):
            wanted = PIXEL_CANDIDATES if variant in (0, 4) else ROTATED_CANDIDATES
            turned = TurnedDescriptors(query_thumbs, variant)  # made a block at a time as they are searched
            # Crops as is and mirrored only. Under rotations too (a first version), on 32 px cats/dogs at plant seeds 1
            # and 2 they added 2–8 false leak flags a row: rotated look-alikes aligned at 0.86–0.92, which the pixel
            # tier's look-alike check does not judge (replayed: 32 px 10 % seed 1 106 flags for 98 leaks; as is and
            # mirrored only, 98 for 95, as before crops). On 50 000 tiles they were the better choice (no planted
            # leak: 3 false flags against 13), the one measure where rotations gained. Using what they find only to
            # raise backgrounds was measured too and cost the photo rows' precision (docs/duplicates.md, "Rotated
            # look-alikes").
            sims, labels = pixel_neighbours(data, turned, wanted + 1, crops=variant in (0, 4))
            if variant in (0, 1) and quality is not None and len(data.thumbs) > EXACT_PIXEL_SEARCH:
                # Each index measured once: with crops as is, by whole frames under the first rotation.
                quality.append(pixel_search_quality(data, turned, labels, self_nodes, crops=variant == 0))
            q, j, position = _first_valid(labels, self_nodes, wanted)
            events.append(Sightings.of(q, j, variant=np.full(len(q), variant),
                                       likeness=sims[q, _column_of(labels, self_nodes, wanted)]))
            # What a variant found lives on in its sightings: its neighbour lists are dropped before the next
            # variant's are made and are not held through the hash search (at 10⁶ the decision's peak, 4.76 GiB,
            # was sampled as a variant's arrays were made while the previous variant's were still held).
            sims = labels = turned = None
    if last_pixel_search:
        data.pixel_index = data.plain_pixel_index = None
    # Hash candidates under each of the 8 variants of the query: one search of the 8·nq variant codes (one index,
    # not eight), whose matches come variant by variant, query by query, as eight searches would give them.
    q_phash, q_dhash = _query_codes(data, query_thumbs)
    if nq and len(data.phash):
        probe_dhash = q_dhash.reshape(8 * nq, -1)

        from auditor.similarity.neighbours import nearest_per_probe

        def closest(rows: np.ndarray) -> np.ndarray:
            # Each chunk of matches, as found: not the query itself, dHash agreeing, the closest HASH_CANDIDATES.
            q, j = rows[:, 0] % nq, rows[:, 1]
            rows = rows[j != self_nodes[q]]
            d_dist = px.hamming(probe_dhash[rows[:, 0]], data.dhash[rows[:, 1]])
            close = d_dist <= max_dhash
            rows = np.column_stack([rows[close], d_dist[close]])  # (probe, code, pHash, dHash distance)
            # Kept until every chunk is found (tens of millions of matches at 10⁶ copy-heavy images): in 4 bytes
            # a number where probes and codes fit.
            narrow = np.int32 if 8 * nq < 2**31 and len(data.phash) < 2**31 else np.int64
            return nearest_per_probe(rows, HASH_CANDIDATES, distance=rows[:, 2] + rows[:, 3]).astype(narrow)

        matches = _hamming_matches(data.phash, q_phash.reshape(8 * nq, -1), max_phash, reduce=closest,
                                   quality=quality)
        events.append(Sightings.of(matches[:, 0] % nq, matches[:, 1], variant=matches[:, 0] // nq,
                                   phash=matches[:, 2], dhash=matches[:, 3]))
        del matches, probe_dhash  # the sightings hold their own narrow copies through the merge and the comparisons
    # Nothing searched is needed past here, only the sightings (at 10⁶ images: dihedral codes 128 MB, the embedding
    # candidates' rows 120 MB).
    q_phash = q_dhash = q = j = rank = position = sims = labels = None
    merged = merge_sightings(events, symmetric)
    if merged is None:
        return _empty_pairs()
    query, target, rank, extra_variant, p_dist, d_dist, hash_match, known_cosine, crowd_mate = merged
    cosine = np.zeros(len(query), dtype=np.float32)
    scaled = np.zeros(len(query), dtype=np.float32)
    if data.unit is not None and query_unit is not None:
        if known_cosine is None:
            cosine = paired_cosines(query_unit, query, data.unit, target)
        else:
            cosine, known_cosine = known_cosine, None
            unknown = np.isnan(cosine)  # a mask, not row numbers: 1 byte a pair (13·10⁶ pairs at 10⁶ images)
            cosine[unknown] = paired_cosines(query_unit, query[unknown], data.unit, target[unknown])
            del unknown
        scaled = scaled_cosine(cosine, q_background[query], data.background[target]).astype(np.float32)
    # Without pixel candidates a rotated copy is found as the nearest embedding neighbour: try all 8 there.
    every_variant = np.zeros(len(query), dtype=bool) if data.pixel_candidates else rank == 0
    correlation, variant = pair_correlation(query_thumbs, query, data.thumbs, target, extra_variant, every_variant,
                                            memo=data.memo)
    return Pairs(query=query, target=target, rank=rank, cosine=cosine, scaled=scaled, correlation=correlation,
                 variant=variant.astype(np.int8), hash_match=hash_match, phash_distance=p_dist, dhash_distance=d_dist,
                 crowd_mate=crowd_mate)


def _first_valid(labels: np.ndarray, self_nodes: np.ndarray, wanted: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, label, position among the row's valid labels) of each row's first `wanted` labels that are neither
    missing (-1) nor the row's own node, row by row: the order the per-row loop saw them in."""
    valid = (labels >= 0) & (labels != self_nodes[:, None])
    position = np.cumsum(valid, axis=1) - 1
    rows, columns = np.nonzero(valid & (position < wanted))
    return rows.astype(np.int64), labels[rows, columns].astype(np.int64), position[rows, columns].astype(np.int64)


def _column_of(labels: np.ndarray, self_nodes: np.ndarray, wanted: int) -> np.ndarray:
    """The columns `_first_valid` takes, in its order."""
    valid = (labels >= 0) & (labels != self_nodes[:, None])
    return np.nonzero(valid & (np.cumsum(valid, axis=1) - 1 < wanted))[1]


NO_HASH = 99  # hash distances of a pair no hash search found


@dataclass
class Sightings:
    """Candidate sightings (query, target) of one kind, in the order they were made: by embedding (`rank`, and the
    `cosine` its search computed where it is kept), by pixel likeness (`variant`, `likeness`) or by hash (`variant`,
    `phash`, `dhash`)."""

    query: np.ndarray
    target: np.ndarray
    rank: np.ndarray
    variant: np.ndarray
    likeness: np.ndarray
    phash: np.ndarray
    dhash: np.ndarray
    by_hash: bool
    cosine: np.ndarray | None = None  # float32 per sighting, or None: not known (computed per pair afterwards)
    crowd: bool = False  # sightings of the members of a query's crowd of copies (crowds.crowd_backgrounds)

    @classmethod
    def of(cls, query, target, rank=None, variant=None, likeness=None, phash=None, dhash=None,
           cosine=None, crowd=False) -> "Sightings":
        # Narrow types (21 bytes a sighting instead of 56): at 10⁶ copy-heavy images there are tens of millions
        # of sightings, held while they are merged. Likeness is a float32 similarity from FAISS, so float32 holds
        # it exactly; nodes fit int32 below 2³¹ images.
        n = len(query)
        node = np.int32 if n == 0 or max(np.max(query), np.max(target)) < 2**31 - 1 else np.int64
        fill = lambda value, default, dtype: (np.full(n, default, dtype=dtype) if value is None
                                              else np.asarray(value, dtype=dtype))
        return cls(np.asarray(query, dtype=node), np.asarray(target, dtype=node), fill(rank, -1, np.int32),
                   fill(variant, -1, np.int8), fill(likeness, -np.inf, np.float32), fill(phash, NO_HASH, np.int16),
                   fill(dhash, NO_HASH, np.int16), phash is not None,
                   None if cosine is None else np.asarray(cosine, dtype=np.float32), crowd)


def merge_sightings(events: list[Sightings], symmetric: bool):
    """One candidate pair per (query, target), or per unordered pair when `symmetric` (queries are the dataset
    itself), from all sightings at once (arrays: a dict filled per sighting cost ~1 µs each, 5·10⁶ and more at
    10⁶ images). Returns (query, target, rank, variant, phash, dhash, hash_match, cosine, crowd_mate) in order of
    first sighting (nodes in the sightings' integer type, rank and distances int16, variant int8, cosine float32,
    crowd_mate bool; cosine None where no sighting carried one, crowd_mate None where no sighting was a crowd's), or
    None when there is none. Per pair:
      - its direction (query → target) is that of its first sighting;
      - rank: the lowest embedding rank of a sighting either way (-1: none);
      - variant: of the hash sighting (in the pair's direction) with the smallest pHash + dHash distance,
        else of the pixel sighting with the highest likeness whose variant is not 0 (a sighting the other way
        round counts with the inverse variant), else -1; the first such sighting wins ties;
      - cosine: of a sighting that carries one (the embedding search's own: the same bits either way round), else NaN;
      - crowd_mate: whether a crowd's sighting saw it, either way round.
    The events are consumed: each of their arrays is released once merged into one array of its kind (tens of
    millions of sightings at 10⁶ copy-heavy images: holding them twice cost ≈ 20 bytes a sighting), and each
    merged array once it has done its part."""
    events = [e for e in events if len(e.query)]
    if not events:
        return None
    lengths = [len(e.query) for e in events]
    by_hash = np.repeat(np.array([e.by_hash for e in events]), lengths)

    def merged(name: str) -> np.ndarray:
        parts = [getattr(e, name) for e in events]
        for e in events:
            setattr(e, name, None)
        return np.concatenate(parts)

    query, target = merged("query"), merged("target")
    low, high = (np.minimum(query, target), np.maximum(query, target)) if symmetric else (query, target)
    span = int(max(low.max(), high.max())) + 1
    key = pair_key(low, high, span)
    del low, high
    order = np.argsort(key, kind="stable")  # by pair, then sighting order
    starts = _sorted_changes(key, order)  # True where a pair's run of sightings starts
    del key
    first = order[starts]  # each pair's first sighting
    n_pairs = len(first)
    index = np.int32 if n_pairs < 2**31 else np.int64
    pair_of = np.empty(len(query), dtype=index)
    pair_of[order] = np.cumsum(starts, dtype=index) - 1  # the pair of each sighting, in sorted order
    del order, starts
    # Per-event columns, made only where an event has them (no cosine is kept below the exact-search limit).
    out_cosine = crowd_mate = None
    for e, start, stop in zip(events, np.cumsum([0] + lengths[:-1]), np.cumsum(lengths)):
        if e.cosine is not None:
            out_cosine = np.full(n_pairs, np.nan, dtype=np.float32) if out_cosine is None else out_cosine
            out_cosine[pair_of[start:stop]], e.cosine = e.cosine, None
        if e.crowd:
            crowd_mate = np.zeros(n_pairs, dtype=bool) if crowd_mate is None else crowd_mate
            crowd_mate[pair_of[start:stop]] = True
    p_query, p_target = query[first], target[first]
    forward = query == p_query[pair_of]  # the sighting is in its pair's direction
    del query, target
    # rank: the lowest of the embedding sightings. Ranks (< CANDIDATES + BACKGROUND_RANK) and hash distances (≤ 64,
    # or NO_HASH) are kept in 2 bytes, variants in 1: per pair through the whole decision (≈ 15·10⁶ pairs at 10⁶
    # images), and per pair here beside the sightings.
    rank = merged("rank")
    out_rank = np.full(n_pairs, np.iinfo(np.int16).max, dtype=np.int16)
    embedded = rank >= 0
    np.minimum.at(out_rank, pair_of[embedded], rank[embedded].astype(np.int16))
    del rank, embedded
    out_rank[out_rank == np.iinfo(np.int16).max] = -1
    out_variant = np.full(n_pairs, -1, dtype=np.int8)
    # pixel sightings with a variant: the most alike, seen in the pair's direction (inverse variant otherwise);
    # a sighting's index is its place in sighting order (ties go to the first)
    variant, likeness = merged("variant"), merged("likeness")
    # (lexsort is stable and the rows ascend: among equal keys the first sighting comes first)
    rows = np.flatnonzero(~by_hash & (variant > 0))
    if len(rows):
        ranked = rows[np.lexsort((-likeness[rows], pair_of[rows]))]
        ranked_pair = pair_of[ranked]
        lead = np.r_[True, ranked_pair[1:] != ranked_pair[:-1]]
        best = ranked[lead]
        out_variant[ranked_pair[lead]] = np.where(forward[best], variant[best], INVERSE[variant[best]])
        del ranked, ranked_pair, lead, best
    del likeness
    out_phash = np.full(n_pairs, NO_HASH, dtype=np.int16)
    out_dhash = np.full(n_pairs, NO_HASH, dtype=np.int16)
    hash_match = np.zeros(n_pairs, dtype=bool)
    # hash sightings in the pair's direction (the other way round they are dropped): the closest
    phash, dhash = merged("phash"), merged("dhash")
    rows = np.flatnonzero(by_hash & (forward | (not symmetric)))
    if len(rows):
        best = rows[np.lexsort((phash[rows] + dhash[rows], pair_of[rows]))]
        lead = np.r_[True, pair_of[best][1:] != pair_of[best][:-1]]
        chosen, pairs = best[lead], pair_of[best[lead]]
        out_variant[pairs], out_phash[pairs], out_dhash[pairs], hash_match[pairs] = (
            variant[chosen], phash[chosen], dhash[chosen], True)
    del pair_of, forward, by_hash, variant, phash, dhash, rows  # the sightings are done with: only pairs from here
    # Nodes stay in the sightings' integer type (4 bytes below 2³¹ images), variants in 1 byte: per pair, held through
    # the whole decision.
    inserted = np.argsort(first, kind="stable")  # pairs in order of first sighting
    del first
    columns = [p_query, p_target, out_rank, out_variant, out_phash, out_dhash, hash_match, out_cosine, crowd_mate]
    del p_query, p_target, out_rank, out_variant, out_phash, out_dhash, hash_match, out_cosine, crowd_mate
    out = []
    for i in range(len(columns)):  # one column at a time, each released once reordered
        column, columns[i] = (None if columns[i] is None else columns[i][inserted]), None
        out.append(column)
    return tuple(out)


def pair_key(a: np.ndarray, b: np.ndarray, span: int) -> np.ndarray:
    """One int64 per node pair, a · span + b (span above every b): sorts as (a, b). Built in place, so the only
    array made is the key (nodes may be int32; their product is not)."""
    key = np.asarray(a).astype(np.int64)
    key *= span
    key += b
    return key


SORTED_CHUNK = 1 << 22  # sorted keys compared at once (a gathered copy of every key cost 8 bytes a sighting)


def _sorted_changes(key: np.ndarray, order: np.ndarray) -> np.ndarray:
    """changes[i]: key[order[i]] differs from key[order[i - 1]] (True at 0): where each run of equal keys starts,
    in sorted order, gathered a chunk at a time."""
    changes = np.empty(len(order), dtype=bool)
    changes[:1] = True
    for start in range(1, len(order), SORTED_CHUNK):
        sorted_part = key[order[start - 1:start + SORTED_CHUNK]]
        changes[start:start + len(sorted_part) - 1] = sorted_part[1:] != sorted_part[:-1]
    return changes


def _least_per_key(key: np.ndarray, weakness: np.ndarray) -> np.ndarray | None:
    """For each distinct key in ascending order, the position of its entry of least `weakness` (NaN last; ties: the
    lower position): what `np.lexsort((weakness, key))` and the first entry of each key give, from a stable sort of
    the keys alone (15 M pairs: 2.5 s against the two-key sort's 7.7). Where a key occurs more than twice (more than
    a pair's two directions) None: the caller sorts on both."""
    order = np.argsort(key, kind="stable")
    changes = _sorted_changes(key, order)
    repeated = ~changes  # repeated[i]: order[i] has the key of order[i - 1]
    if (repeated[1:] & repeated[:-1]).any():
        return None
    second = np.flatnonzero(repeated)
    earlier, later = weakness[order[second - 1]], weakness[order[second]]
    later_first = (later < earlier) | (np.isnan(earlier) & ~np.isnan(later))
    order[second[later_first] - 1] = order[second[later_first]]
    return order[changes]


def _query_codes(data: Dataset, query_thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(query_thumbs):
        return (np.zeros((8, 0, 8), np.uint8),) * 2
    if data.memo is None:
        return dihedral_codes(query_thumbs)
    return data.memo.dihedral_codes(query_thumbs, dihedral_codes)


def _inverse(variant: int) -> int:
    """The dihedral variant that undoes `variant` (rotations by 90° and 270° swap; mirrorings undo themselves)."""
    turns, mirrored = px.DIHEDRAL[variant]
    return px.DIHEDRAL.index(((-turns) % 4 if not mirrored else turns, mirrored))


INVERSE = np.array([_inverse(v) for v in range(8)], dtype=np.int64)


PAIR_CHUNK = 16_384  # pairs whose thumbnails are compared at once (the shift-and-zoom search holds float copies)


def pair_correlation(thumbs_a: np.ndarray, rows_a: np.ndarray, thumbs_b: np.ndarray, rows_b: np.ndarray,
                     extra_variant: np.ndarray, every_variant: np.ndarray | bool = False, memo=None):
    """`_best_correlation` of the pairs (thumbs_a[rows_a[i]], thumbs_b[rows_b[i]]), PAIR_CHUNK pairs at a time
    (the same numbers in bounded memory: at once, 10⁵ images' candidate pairs took 17 GB), looked up in and
    added to `memo` (a pixel_memo.PixelMemo) when given."""
    from auditor.similarity.neighbours import row_indices

    rows_a, rows_b = row_indices(rows_a), row_indices(rows_b)
    if memo is not None:
        # Each thumbnail hashed once, its digest looked up by row per chunk of pairs (a digest per pair held
        # 32 bytes a pair for the whole loop: ≈ 0.5 GB at 10⁶ images' candidate pairs).
        digest_a, digest_b = memo.digest_table(thumbs_a, rows_a), memo.digest_table(thumbs_b, rows_b)

    def compare(part, extra, every):
        if memo is None:
            return _best_correlation(thumbs_a[rows_a[part]], thumbs_b[rows_b[part]], extra, every)
        # The memo reads the thumbnails of only the pairs it lacks: a warm decision at 10⁶ images gathered 2 × 14 M
        # thumbnails (28 GB copied, and read again from disk where the thumbnail file's pages do not stay in memory)
        # to compute nothing.
        return memo.correlations(_Gathered(thumbs_a, rows_a[part]), _Gathered(thumbs_b, rows_b[part]), extra, every,
                                 _best_correlation, digest_a[rows_a[part]], digest_b[rows_b[part]])

    extra_variant = np.broadcast_to(np.asarray(extra_variant), (len(rows_a),))
    every = np.broadcast_to(np.asarray(every_variant, dtype=bool), (len(rows_a),))
    correlation = np.empty(len(rows_a), dtype=np.float32)
    variant = np.empty(len(rows_a), dtype=np.int64)
    # Chunks of pairs that share their first image (pixels._evaluate reuses an image's features within a block);
    # candidate pairs come in sighting order, which scatters an image's pairs over the whole list.
    by_first = np.argsort(rows_a, kind="stable")
    # The second images' thumbnails are read at random: without read-around (memory.random_access), which inside a
    # memory limit read 128 KB of a memory-mapped thumbnail file for each 1 KB thumbnail.
    with random_access(thumbs_a), random_access(thumbs_b):
        for start in range(0, len(rows_a), PAIR_CHUNK):
            part = by_first[start:start + PAIR_CHUNK]
            correlation[part], variant[part] = compare(part, np.ascontiguousarray(extra_variant[part]),
                                                       np.ascontiguousarray(every[part]))
    if memo is not None:
        memo.flush()
    return correlation, variant


class _Gathered:
    """thumbs[rows], gathered only where indexed (`self[subset]`): the pairs' thumbnails a memo lacks."""

    def __init__(self, thumbs: np.ndarray, rows: np.ndarray):
        self.thumbs, self.rows = thumbs, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, subset) -> np.ndarray:
        return self.thumbs[self.rows[subset]]


def _best_correlation(a: np.ndarray, b: np.ndarray, extra_variant: np.ndarray, every_variant: np.ndarray | bool = False):
    """Aligned correlation of a's variant with b: as is and mirrored for every pair, and the variant a pixel or
    hash candidate was found under (`extra_variant`, -1: none); all 8 where `every_variant` (bool or per pair)."""
    n = len(a)
    every = np.broadcast_to(np.asarray(every_variant, dtype=bool), (n,))
    extra = np.broadcast_to(np.asarray(extra_variant, dtype=np.int64), (n,))
    wanted = every[:, None] | (np.arange(8)[None, :] == extra[:, None])
    wanted[:, 0] = wanted[:, 4] = True
    corr = px.variant_correlations(a, b, wanted)
    best = corr[:, 0].copy()
    variant = np.zeros(n, dtype=np.int64)
    for v in range(1, 8):  # the first variant reaching the best wins ties, as before
        better = wanted[:, v] & (corr[:, v] > best)
        best[better] = corr[better, v]
        variant[better] = v
    return best, variant


def _hamming_matches(codes: np.ndarray, queries: np.ndarray, max_distance: int, reduce=None,
                     quality: list | None = None) -> np.ndarray:
    """(query, code index, distance, …) rows: each query's HASH_SEARCHED nearest codes within max_distance bits
    (neighbours.hamming_nearest: exact for small sets, an approximate binary index whose recall is measured
    for large ones: a flat search of 10⁶ queries against 10⁶ codes is 10¹² comparisons per variant), `reduce`
    applied to each chunk found."""
    from auditor.similarity.neighbours import hamming_nearest

    return hamming_nearest(codes, queries, max_distance, HASH_SEARCHED, reduce=reduce, quality=quality)


def _empty_pairs() -> Pairs:
    e_i, e_s = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int16)
    e_f = np.zeros(0, dtype=np.float32)
    return Pairs(query=e_i, target=e_i, rank=e_s, cosine=e_f, scaled=e_f, correlation=e_f, variant=e_i,
                 hash_match=np.zeros(0, dtype=bool), phash_distance=e_s, dhash_distance=e_s)


def unordered(pairs: Pairs) -> Pairs:
    """Dataset-vs-dataset pairs once each (a < b), keeping the stronger evidence of the two directions, ordered by
    (a, b). Consumes `pairs` (its columns are released one by one as they are copied: ≈ 15·10⁶ pairs at 10⁶ images,
    where holding both whole was this step's peak)."""
    if not len(pairs):
        return pairs
    a = np.minimum(pairs.query, pairs.target)
    b = np.maximum(pairs.query, pairs.target)
    key = pair_key(a, b, int(b.max()) + 1)
    weakness = -(pairs.correlation + pairs.scaled)
    chosen = _least_per_key(key, weakness)
    if chosen is None:  # a pair seen in more than two directions: the general (slower) sort
        order = np.lexsort((weakness, key))  # by pair, the stronger direction first
        chosen = order[_sorted_changes(key, order)]
        del order
    del key, weakness
    a, b = a[chosen], b[chosen]
    columns = {}
    for name in pairs.__dataclass_fields__:
        values = getattr(pairs, name)
        setattr(pairs, name, None)
        columns[name] = None if values is None else values[chosen]
        del values
    columns["query"], columns["target"] = a, b
    return Pairs(**columns)
