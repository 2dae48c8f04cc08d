"""Crowds of one picture's copies — frames of a clip, burst shots, one photo re-uploaded by every source — found
among a search's queries, so that their scores are judged against the images beyond the crowd (`crowd_backgrounds`,
called by `evidence.make_dataset` and `evidence.search`).

A crowd holds more copies than BACKGROUND_RANK, so an image's BACKGROUND_RANK-th neighbour is one of its own copies
and every density-aware score among them collapses. A crowd of copies ends in a gap to every other image; a crowd of
look-alikes thins out (docs/duplicates.md, "Crowds of one picture's copies" and "Crowds larger than 64").
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from auditor.similarity.evidence import BACKGROUND_RANK, CANDIDATES, Sightings, _backgrounds

# A crowd of one picture's copies: frames of a clip, burst shots, one photo re-uploaded by every source — more copies
# than BACKGROUND_RANK, so an image's BACKGROUND_RANK-th neighbour is one of its own copies and every scaled cosine
# among them collapses to ≈ 0. Such a crowd shows as a gap in the image's sorted neighbour cosines: its members, then a
# fall to every other image. Measured on the bench's dumped rows (bench/decision_replay.py; the largest relative fall
# (s_j − s_j+1) / (1 − s_j+1) at positions j ≥ BACKGROUND_RANK among the 64 nearest): clips of 20–30 frames (6–24 px
# of motion, 32 px to ≈ 500 px) a median of 0.53–0.91, at the clip's size; every other row — photos native / 64 /
# 32 px, digits, Fashion-MNIST and MNIST (3 000 and 25 000), 50 000 tiles of 32 px, sets of 25–28 — at most 0.22
# (99th percentiles 0.04–0.22): a crowd of look-alikes thins out, a crowd of copies ends (docs/duplicates.md, "Crowds
# of one picture's copies").
CROWD_DEPTH = 64  # neighbours examined for such a gap (deeper in a larger sink component: `_crowd_depths`)
CROWD_GAP = 0.4  # the relative fall that ends a crowd
# Only images whose BACKGROUND_RANK-th neighbour is at least this close are examined (a k-NN query of CROWD_DEPTH
# neighbours each): every frame of the native clip rows has ≥ 0.90 (at 32 px from 0.80: 430 of 600 frames are found
# in crowds there); photos 0.0 % of the images, Fashion-MNIST 28–32 %, MNIST 95 %, digits 99.7 %.
CROWD_MIN_COSINE = 0.85
# Above neighbours.EXACT_LIMIT images the deeper search is bounded: a seeded sample of CROWD_SAMPLE eligible images
# first, and only where it holds a crowd a seeded share of them up to CROWD_BUDGET; a crowd found gives every member
# its crowd, searched or not, so a crowd of m ≥ 11 images is missed only where none of its members is searched:
# (1 − searched share)^m, 1 in 11 at m = 11 and 1 in 800 at m = 30 where a fifth is searched. On 10⁶ vectors
# resampled from real embeddings (bench_scale.py vectors) every one of 977 789 eligible images searched took 173 s
# beside the k-NN graph's 56 s; bounded, 57 s; with the screened search and the faster closure test below, the whole
# decision 120 → 92 s (docs/duplicates.md, "Crowds larger than 64, and their search at scale").
CROWD_SAMPLE = 5_000
CROWD_BUDGET = 200_000
CROWD_BLOCK = 65_536  # queries searched at a time (their rows copied: 168 MB of float16 at 1 280 dimensions)


@dataclass
class Crowds:
    """The crowds of copies among a search's queries (`crowd_backgrounds`)."""

    examined: int  # queries whose CROWD_DEPTH (or more) neighbours were searched
    eligible: int  # queries close to their BACKGROUND_RANK-th neighbour (CROWD_MIN_COSINE) in a closed neighbourhood
    members: "Sightings | None"  # each query in a crowd and its fellow members, as embedding sightings; None: none
    sampled: bool = False  # a seeded sample of the eligible queries was examined first (CROWD_SAMPLE)
    deepest: int = CROWD_DEPTH  # the most neighbours any query was searched for a gap (`_crowd_depths`)

    @property
    def in_crowds(self) -> int:
        return 0 if self.members is None else int(len(np.unique(self.members.query)))

    def as_dict(self) -> dict:
        largest = 0 if self.members is None else int(np.bincount(self.members.query).max()) + 1
        return {"images_in_crowds": self.in_crowds, "largest_crowd": largest, "examined": self.examined,
                "eligible": self.eligible, "depth": CROWD_DEPTH, "deepest": self.deepest, "min_gap": CROWD_GAP,
                "sampled_first": self.sampled}


def crowd_backgrounds(unit: np.ndarray, query_unit: np.ndarray, neighbours: tuple[np.ndarray, np.ndarray],
                      self_nodes: np.ndarray, graph: np.ndarray) -> tuple[np.ndarray, Crowds]:
    """Each query's background (`_backgrounds`: its BACKGROUND_RANK-th neighbour's cosine among `unit`, from its
    `neighbours` (sims, labels)), where the query sits in a crowd of one picture's copies (CROWD_GAP) the cosine of the
    BACKGROUND_RANK-th neighbour after the crowd instead (the last of CROWD_DEPTH where fewer follow); and the crowds
    (`Crowds`). `self_nodes[q]`: the row of `unit` query q is, or -1; `graph`: the labels of `unit`'s own k-NN graph
    (row i: i's nearest rows, itself among them or not)."""
    from auditor.similarity.neighbours import EXACT_LIMIT

    self_nodes = np.asarray(self_nodes, dtype=np.int64)
    background = _backgrounds(*neighbours, self_nodes)
    close = np.flatnonzero(background >= CROWD_MIN_COSINE)
    if not len(close) or len(unit) <= BACKGROUND_RANK + 1:
        return background, Crowds(0, 0, None)
    # A crowd's members have one another as nearest neighbours: the neighbours of a query's neighbours stay within
    # its crowd. Where they reach further than CROWD_DEPTH images, the query is in none (a look-alike's spread on);
    # where its crowd is a larger sink component of the graph, it is searched as deep as that (`_crowd_depths`).
    depths = _crowd_depths(neighbours[1][close], self_nodes[close], graph)
    eligible, depths = close[depths > 0], depths[depths > 0]
    if not len(eligible):
        return background, Crowds(0, 0, None)
    picked, sampled = np.arange(len(eligible)), len(unit) > EXACT_LIMIT and len(eligible) > CROWD_SAMPLE
    if sampled:
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(len(eligible), CROWD_SAMPLE, replace=False))
        if not any(part[1].any() for part in _crowd_gaps_by_depth(unit, query_unit, eligible[sample], depths[sample],
                                                                  self_nodes)):
            return background, Crowds(len(sample), len(eligible), None, sampled=True,
                                      deepest=int(depths[sample].max()))
        if len(eligible) > CROWD_BUDGET:
            picked = np.sort(rng.choice(len(eligible), CROWD_BUDGET, replace=False))
    rows = eligible[picked]
    found: list[Sightings] = []
    for part_rows, crowd, members, beyond, nearest in _crowd_gaps_by_depth(unit, query_unit, rows, depths[picked],
                                                                            self_nodes):
        if not crowd.any():
            continue
        found_rows, members, beyond, nearest = part_rows[crowd], members[crowd], beyond[crowd], nearest[crowd]
        background[found_rows] = beyond
        # Every member a candidate of the query, by its rank among the query's neighbours: a crowd of 30 frames holds
        # 29 duplicates of each frame, of which CANDIDATES would be measured otherwise — and a calibration copy's match
        # with one of them is judged by the evidence of that member and the copy's source, which must then be a pair.
        member = np.arange(nearest.shape[1])[None, :] < members[:, None]
        at_row, rank = np.nonzero(member)
        found.append(Sightings.of(found_rows[at_row], nearest[at_row, rank], rank=rank))
        # Members not searched — left out by the budget, or not eligible themselves (a long clip's frames whose
        # three-step neighbourhood reaches past CROWD_DEPTH: 532 of 720 at 32 px) — take the crowd from a finder.
        found += _through_members(found_rows, nearest, members, beyond, rows, self_nodes, neighbours[1], background)
    deepest = int(depths[picked].max())
    if not found:
        return background, Crowds(len(rows), len(eligible), None, sampled=sampled, deepest=deepest)
    query = np.concatenate([f.query for f in found])
    target = np.concatenate([f.target for f in found])
    return background, Crowds(len(rows), len(eligible), Sightings.of(query, target, rank=np.concatenate(
        [f.rank for f in found]), crowd=True), sampled=sampled, deepest=deepest)


def _through_members(found_rows: np.ndarray, nearest: np.ndarray, members: np.ndarray, beyond: np.ndarray,
                     searched: np.ndarray, self_nodes: np.ndarray, labels: np.ndarray,
                     background: np.ndarray) -> list["Sightings"]:
    """The crowds found among the searched queries given to their members that were not searched (only where the
    queries are the searched matrix's own rows): each such member takes its crowd — its finder and the finder's other
    members — from the first query that found it, and that query's background beyond the crowd (`background` is
    updated), where its own BACKGROUND_RANK nearest (`labels`) all lie in that crowd. On 10⁶ vectors resampled from
    real embeddings (fuzzy clouds, not copies) 21 886 images took a crowd without that check and 18 539 with it, where
    searching every image found 13 490: members whose own fall is smaller take their finder's. Their ranks are the
    finder's ranks after CANDIDATES (never taken for a member's own nearest)."""
    if (self_nodes < 0).any():
        return []
    node_to_query = np.full(int(max(self_nodes.max(), nearest.max())) + 1, -1, dtype=np.int64)
    node_to_query[self_nodes] = np.arange(len(self_nodes))
    was_searched = np.zeros(len(self_nodes), dtype=bool)
    was_searched[searched] = True
    finder, position = np.nonzero(np.arange(nearest.shape[1])[None, :] < members[:, None])
    query = node_to_query[nearest[finder, position]]
    keep = (query >= 0) & ~was_searched[np.maximum(query, 0)]
    query, finder = query[keep], finder[keep]
    query, first = np.unique(query, return_index=True)  # each unsearched member once, from its first finder
    finder = finder[first]
    # The member's fellows: the finder itself, then the finder's other members (−1 past them).
    fellows = np.concatenate([self_nodes[found_rows][finder][:, None], nearest[finder]], axis=1)
    slot = np.arange(fellows.shape[1])[None, :]
    fellows[slot >= (members[finder] + 1)[:, None]] = -1
    inside = np.zeros(len(query), dtype=bool)
    for start in range(0, len(query), CLOSED_BLOCK):
        part = slice(start, start + CLOSED_BLOCK)
        own = np.asarray(labels[query[part], :BACKGROUND_RANK + 1], dtype=np.int64)
        own = np.where(own == self_nodes[query[part]][:, None], -1, own)
        known = (own[:, :, None] == fellows[part][:, None, :]).any(axis=2) | (own < 0)
        inside[part] = known.all(axis=1)
    query, finder, fellows = query[inside], finder[inside], fellows[inside]
    if not len(query):
        return []
    background[query] = beyond[finder]
    take = (fellows >= 0) & (fellows != self_nodes[query][:, None])
    at, col = np.nonzero(take)
    return [Sightings.of(query[at], fellows[at, col], rank=CANDIDATES + col)]


CLOSED_BLOCK = 4_096  # queries whose neighbourhoods are gathered at a time (≈ 1 500 labels each, 48 MB a block)
CLOSED_HOPS = 3  # neighbours, their neighbours, and theirs
# A crowd larger than CROWD_DEPTH (a clip of 120 frames): its members' nearest neighbours all lie within it and each
# reaches every other through them, so it is a strongly connected component of the k-NN graph that no edge leaves (a
# sink). A look-alike's neighbourhood runs on into the rest of the data: on every dumped truth row but one the only
# sink component larger than CROWD_DEPTH holds nearly the whole dataset (386–48 634 images); 6 clips × 120 frames
# with 12 px of motion are 6 sinks of 120 (459 of their 720 frames pass the closure test below). An image in such a
# sink of m images, CROWD_DEPTH < m − 1 ≤ CROWD_LARGEST, is searched m − 1 deep (and BACKGROUND_RANK beyond). Stepping
# on each query's neighbourhood until it closed found the same 459 and nothing else on these rows, but took 219 s at
# 10⁶ resampled vectors, where the components take seconds.
CROWD_LARGEST = 500


def _crowd_depths(labels: np.ndarray, self_nodes: np.ndarray, graph: np.ndarray) -> np.ndarray:
    """Per query: how many neighbours to search for a crowd's gap — 0 (none) where what its neighbours (`labels`,
    the first BACKGROUND_RANK + 1 columns) reach in CLOSED_HOPS steps of `graph` is more than CROWD_DEPTH images
    (`_closed`); else CROWD_DEPTH, or m where the query (a row of `graph`, or every neighbour of a query that is not
    one) lies in a sink component of `graph` of more than CROWD_DEPTH images, m of them besides the query, m ≤
    CROWD_LARGEST (`_sink_sizes`)."""
    depths = np.where(_closed(labels, self_nodes, graph), CROWD_DEPTH, 0)
    eligible = np.flatnonzero(depths)
    if not len(eligible):
        return depths
    component, sink_size = _sinks_of(graph)
    nodes = self_nodes[eligible]
    own = np.where(nodes >= 0, sink_size[component[np.maximum(nodes, 0)]] - 1, 0)
    # A query that is no row of the graph (a calibration copy) is in the crowd its every neighbour is in.
    near = np.asarray(labels[eligible, :BACKGROUND_RANK + 1], dtype=np.int64)
    theirs = np.where(near >= 0, component[np.maximum(near, 0)], -1)
    first = theirs.max(axis=1)
    one = ((theirs == first[:, None]) | (theirs < 0)).all(axis=1) & (first >= 0)
    copied = np.where(one & (nodes < 0), sink_size[np.maximum(first, 0)], 0)
    size = np.maximum(own, copied)
    deep = (size > CROWD_DEPTH) & (size <= CROWD_LARGEST)
    depths[eligible[deep]] = size[deep]
    return depths


_last_sinks: list = []  # [(weak reference to a graph, its `_sink_sizes`)]: the last graph's


def _sinks_of(graph: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_sink_sizes` of the graph's first BACKGROUND_RANK + 1 columns, remembered for the last graph object: the
    copies' search reads the dataset's graph again (≈ 1 s at 10⁶ images each time)."""
    for ref, sinks in _last_sinks:
        if ref() is graph:
            return sinks
    sinks = _sink_sizes(graph[:, :BACKGROUND_RANK + 1])
    _last_sinks[:] = [(weakref.ref(graph), sinks)]
    return sinks


def _sink_sizes(graph: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The strongly connected components of the directed k-NN graph (row i: i's nearest rows, −1 for none): each
    row's component, and each component's size where no edge leaves it (0 where one does)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    n, width = graph.shape
    source = np.repeat(np.arange(n, dtype=np.int64), width)
    target = np.asarray(graph, dtype=np.int64).ravel()
    valid = target >= 0
    source, target = source[valid], target[valid]
    edges = csr_matrix((np.ones(len(source), dtype=np.int8), (source, target)), shape=(n, n))
    count, component = connected_components(edges, directed=True, connection="strong")
    size = np.bincount(component, minlength=count)
    leaves = component[source] != component[target]
    size[np.unique(component[source[leaves]])] = 0
    return component, size


def _closed(labels: np.ndarray, self_nodes: np.ndarray, graph: np.ndarray) -> np.ndarray:
    """Per query: whether what its neighbours (`labels`, the first BACKGROUND_RANK + 1 columns) reach in CLOSED_HOPS
    steps of `graph` is at most CROWD_DEPTH distinct images besides itself. A crowd's members have one another as
    nearest neighbours, so this stays within the crowd; a look-alike's spreads on. Measured on the dumped truth rows
    (images whose 10th neighbour is ≥ CROWD_MIN_COSINE): every clip frame reaches ≤ 29 images (its clip), while
    MNIST, digits and Fashion-MNIST reach a median of 162–229 (19 of 2 916, 51 of 1 827 and 8 of 7 850 images ≤ 64);
    two steps were not enough (a median of 53–62, 58–80 % of those images ≤ 64).

    Each step goes on from the distinct images reached so far (the next step from them reaches the same images as
    from the last step's alone, plus ones already reached), and a query that has reached more than CROWD_DEPTH is
    done (one array of every path, 11³ labels a query, took 16.3 s on one core at 10⁶ resampled vectors; 5.9 s on
    two, 11.5 CPU-s, the same answer)."""
    out = np.zeros(len(labels), dtype=bool)
    width = BACKGROUND_RANK + 1
    graph = graph[:, :width]

    def block(start: int) -> None:
        rows = np.arange(start, min(start + CLOSED_BLOCK, len(labels)))
        reached = _distinct_rows(np.asarray(labels[rows, :width], dtype=np.int64), self_nodes[rows])
        for _hop in range(CLOSED_HOPS - 1):
            small = (reached >= 0).sum(axis=1) <= CROWD_DEPTH
            rows, reached = rows[small], reached[small]
            if not len(rows):
                return
            further = np.asarray(graph[np.maximum(reached, 0)], dtype=np.int64)
            further[reached < 0] = -1
            reached = _distinct_rows(np.concatenate([reached, further.reshape(len(further), -1)], axis=1),
                                     self_nodes[rows])
        out[rows] = (reached >= 0).sum(axis=1) <= CROWD_DEPTH

    from auditor.parallel import run_blocks

    run_blocks(block, range(0, len(labels), CLOSED_BLOCK))
    return out


def _distinct_rows(found: np.ndarray, self_nodes: np.ndarray) -> np.ndarray:
    """Each row's distinct non-negative entries other than its own node, ascending, then −1; as few columns as the
    row with most needs."""
    found = np.where((found < 0) | (found == self_nodes[:, None]), np.iinfo(np.int64).max, found)
    found.sort(axis=1)
    repeat = np.zeros(found.shape, dtype=bool)
    repeat[:, 1:] = found[:, 1:] == found[:, :-1]
    found[repeat] = np.iinfo(np.int64).max
    found.sort(axis=1)
    width = int((found < np.iinfo(np.int64).max).sum(axis=1).max(initial=0))
    found = found[:, :max(width, 1)]
    found[found == np.iinfo(np.int64).max] = -1
    return found


# Above neighbours.EXACT_LIMIT the deeper search is approximate, and a missed neighbour can make a fall that is not
# there. Measured on 20 000 eligible images of the 10⁶ resampled vectors (bench_scale.py vectors), against exact
# search of every image any setting called a crowd: re-ranking 4× the neighbours (the factor tuned for the k-NN
# graph) called 267 crowds, 216 of them true, of 217 (3.6 s); 8×, 244 and 217 (7.1 s); 1×, 354 and 215 (1.2 s).
# So every query is screened at CROWD_SCREEN_REFINE and only those it calls crowds are searched again at
# neighbours.MAX_REFINE_FACTOR: 242 crowds, 215 true, in 1.4 s. (Measured at efSearch 32; both searches walk with the
# index's tuned efSearch, 128 at 10⁶ since the forty-third session: the crowd search there 15–16.5 → 17.8–19.2 s.)
CROWD_SCREEN_REFINE = 1


def _crowd_gaps_by_depth(unit: np.ndarray, query_unit: np.ndarray, rows: np.ndarray, depths: np.ndarray,
                         self_nodes: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """`_crowd_gaps` of queries `rows`, each searched `depths[i]` deep: (rows, crowd, members, beyond, nearest) per
    depth searched — CROWD_DEPTH, and above it powers of two, so that a few deep queries do not widen every row."""
    deep = depths > CROWD_DEPTH
    out = []
    if (~deep).any():
        out.append((rows[~deep], *_crowd_gaps(unit, query_unit, rows[~deep], self_nodes)))
    if deep.any():
        # The crowd, then BACKGROUND_RANK beyond it (its background), rounded up to a power of two.
        bucket = 2 ** np.ceil(np.log2(depths[deep] + BACKGROUND_RANK)).astype(np.int64)
        for size in np.unique(bucket):
            part = rows[deep][bucket == size]
            out.append((part, *_crowd_gaps(unit, query_unit, part, self_nodes, int(size))))
    return out


def _crowd_gaps(unit: np.ndarray, query_unit: np.ndarray, rows: np.ndarray, self_nodes: np.ndarray,
                depth: int = CROWD_DEPTH) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For queries `rows`: whether each sits in a crowd (bool), how many others are in it, the cosine of the
    BACKGROUND_RANK-th neighbour after it, and the queries' other neighbours nearest first (rows × ≤ `depth`,
    −1 padding). Where the search is approximate, screened cheaply and the crowds it finds searched again
    thoroughly (CROWD_SCREEN_REFINE)."""
    from auditor.similarity.neighbours import EXACT_LIMIT, MAX_REFINE_FACTOR

    if len(unit) <= EXACT_LIMIT:
        return _searched_gaps(unit, query_unit, rows, self_nodes, depth)
    found = _searched_gaps(unit, query_unit, rows, self_nodes, depth, CROWD_SCREEN_REFINE)
    again = np.flatnonzero(found[0])
    if len(again):
        for whole, part in zip(found, _searched_gaps(unit, query_unit, rows[again], self_nodes, depth,
                                                     MAX_REFINE_FACTOR)):
            whole[again] = part
    return found


def _searched_gaps(unit: np.ndarray, query_unit: np.ndarray, rows: np.ndarray, self_nodes: np.ndarray, depth: int,
                   refine_factor: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`_crowd_gaps` of one search (`refine_factor`: as `neighbours.knn`'s). Searched and measured CROWD_BLOCK
    queries at a time: their rows are copied to be searched, and the float64 temporaries of 2·10⁵ queries at once
    would hold ≈ 0.5 GB."""
    from auditor.similarity.neighbours import knn

    k = min(len(unit), depth + 1)
    crowd = np.zeros(len(rows), dtype=bool)
    members = np.zeros(len(rows), dtype=np.int64)
    beyond = np.zeros(len(rows), dtype=np.float64)
    nearest = np.full((len(rows), k), -1, dtype=np.int64 if len(unit) >= 2**31 else np.int32)
    for start in range(0, len(rows), CROWD_BLOCK):
        part = slice(start, start + CROWD_BLOCK)
        sims, labels = knn(unit, k, queries=query_unit[rows[part]], refine_factor=refine_factor)
        crowd[part], members[part], beyond[part], nearest[part] = _gaps(sims, labels, self_nodes[rows[part]])
    return crowd, members, beyond, nearest


def _gaps(sims: np.ndarray, labels: np.ndarray, self_nodes: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`_crowd_gaps` for one block of queries, from their neighbours (sims, labels) and their own rows."""
    others = (labels >= 0) & (labels != self_nodes[:, None])
    order = np.argsort(~others, axis=1, kind="stable")  # the others first, in their order
    s = np.take_along_axis(sims, order, axis=1).astype(np.float64)
    neighbours = np.where(np.take_along_axis(others, order, axis=1), np.take_along_axis(labels, order, axis=1), -1)
    count = others.sum(axis=1)
    s[np.arange(s.shape[1])[None, :] >= count[:, None]] = -np.inf
    after = s[:, BACKGROUND_RANK:]  # s_j+1 for 1-based j ≥ BACKGROUND_RANK
    with np.errstate(invalid="ignore", divide="ignore"):
        fall = (s[:, BACKGROUND_RANK - 1:-1] - after) / np.maximum(1.0 - after, 1e-6)
    fall[~np.isfinite(fall)] = 0.0
    if not fall.shape[1]:
        return np.zeros(len(s), dtype=bool), np.zeros(len(s), dtype=np.int64), np.zeros(len(s)), neighbours
    at = np.argmax(fall, axis=1)
    crowd = fall[np.arange(len(s)), at] >= CROWD_GAP
    members = BACKGROUND_RANK + at  # others in the crowd: the fall follows the crowd's last member
    beyond = s[np.arange(len(s)), np.maximum(np.minimum(members + BACKGROUND_RANK, count) - 1, 0)]
    return crowd, members, beyond, neighbours
