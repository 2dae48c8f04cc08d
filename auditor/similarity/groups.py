"""Duplicate groups that do not chain.

Connected components of "is a duplicate of" edges chain: A≈B, B≈C, …, puts 77 different silver cars in one
group when each resembles the next. Here a group is a set of images that are *all* duplicates of each other:
inside each connected component, every pair is judged by the same rule (pairs that were not candidates are
measured on demand), and the component is split greedily into cliques of that relation.

Measuring every two members costs size² per component. On photos the components are small (fewer than 0.5
pairs to measure per image on every truth row of bench/bench_truth.py); where a dataset is mostly copies of a
few thousand pictures (video frames, resampled vectors) they are not (17 pairs per image at 10⁵ resampled
vectors, of the order of 10⁸ at 10⁶). So the pairs measured on demand have a budget that grows linearly with
the dataset; components are measured smallest first while it lasts, and the rest are split on the pairs
already measured only (which can only make their groups smaller, never chain them). `SplitStats` says how many.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

MAX_COMPONENT_CHECKED = 400  # beyond this, only the pairs already measured are used (cost grows as size²)
# The budget of pairs measured on demand (each under 8 rotations and mirrorings): this many per image … At 10⁶
# resampled vectors the decision took 2 330 CPU-s with 4 per image (3.96 M pairs judged) and 979 with 1 (a dearer
# hash search in that run); 60 000 real 32 px crops needed 0.16 per image.
JUDGED_PAIRS_PER_IMAGE = 1
MIN_JUDGED_PAIRS = 50_000  # … and never fewer (truth rows: < 1 000 pairs, < 0.5 per image: it binds only on copy-heavy data)


@dataclass(frozen=True)
class SplitStats:
    """How chained components were split: `judged_pairs` measured on demand (within `budget`);
    `unjudged_components` (holding `unjudged_images`) split on the already-measured pairs only, because they
    exceed MAX_COMPONENT_CHECKED or the budget was spent."""
    components: int
    judged_pairs: int
    budget: int
    unjudged_components: int
    unjudged_images: int

    def to_dict(self) -> dict[str, int]:
        return {"chained_components": self.components, "pairs_judged_on_demand": self.judged_pairs,
                "pairs_budget": self.budget, "components_split_on_measured_pairs_only": self.unjudged_components,
                "images_in_them": self.unjudged_images}


def judged_pairs_budget(n: int) -> int:
    return max(MIN_JUDGED_PAIRS, JUDGED_PAIRS_PER_IMAGE * n)


def connected(n: int, edges: np.ndarray) -> list[list[int]]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not len(edges) or n == 0:
        return []
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _count, labels = connected_components(graph, directed=False)
    order = np.argsort(labels, kind="stable")  # nodes by component, ascending within each
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    return [part.tolist() for part in np.split(order, bounds) if len(part) > 1]


def clique_groups(n: int, edges: np.ndarray,
                  judge: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                  budget: int | None = None, stats: list[SplitStats] | None = None) -> list[list[int]]:
    """Groups (node lists, size ≥ 2) in which every two members are duplicates.

    edges: (E, 2) accepted pairs. judge(a, b) → bool array: whether node pairs that are not edges are
    duplicates after all (measured on demand, all components' pairs in one call); None: only the given edges
    count. budget: at most this many pairs judged (default `judged_pairs_budget(n)`); components are taken
    smallest first while their pairs fit. stats: a list the `SplitStats` is appended to.
    Each component is split on its own edges, held as arrays: a set of pair tuples per component, then a set of
    neighbours per node, cost of the order of 150 bytes per edge (by arithmetic: a tuple, two ints, set slots),
    and a call to judge per component cost its fixed overhead thousands of times (15 000 images: 36 of 72 CPU-seconds of the whole decision)."""
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    edges = np.unique(np.sort(edges, axis=1), axis=0) if len(edges) else edges
    edges = edges[edges[:, 0] != edges[:, 1]]
    components = connected(n, edges)
    budget = judged_pairs_budget(n) if budget is None else budget
    component_of = np.full(n, -1, dtype=np.int64)
    for number, component in enumerate(components):
        component_of[component] = number
    edge_counts = np.bincount(component_of[edges[:, 0]], minlength=len(components)) if len(edges) else \
        np.zeros(len(components), dtype=np.int64)
    chained = [number for number, c in enumerate(components) if len(c) > 2]
    measured = _components_within_budget(components, edge_counts, budget) if judge is not None else set()
    unjudged = [number for number in chained if number not in measured]
    missing = _unmeasured_pairs(components, sorted(measured), edges, component_of)
    judged = missing[np.asarray(judge(missing[:, 0], missing[:, 1]), dtype=bool)] if len(missing) else missing
    if stats is not None:
        stats.append(SplitStats(components=len(chained), judged_pairs=len(missing),
                                budget=budget, unjudged_components=len(unjudged),
                                unjudged_images=sum(len(components[k]) for k in unjudged)))
    linked = np.concatenate([edges, judged])
    order = np.argsort(component_of[linked[:, 0]], kind="stable")  # each component's links, one run each
    linked = linked[order]
    run_starts = np.searchsorted(component_of[linked[:, 0]], np.arange(len(components) + 1))
    groups: list[list[int]] = []
    for number, component in enumerate(components):
        if len(component) == 2:
            groups.append(component)
        else:
            groups.extend(_greedy_cliques(np.asarray(component, dtype=np.int64),
                                          linked[run_starts[number]:run_starts[number + 1]]))
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def _unmeasured_pairs(components: list[list[int]], numbers: list[int], edges: np.ndarray,
                      component_of: np.ndarray) -> np.ndarray:
    """Every two members of these components that are not already an edge, component by component, each pair
    (a < b) in member order."""
    wanted = np.zeros(len(components), dtype=bool)
    wanted[numbers] = True
    known = {(a, b) for a, b in edges[wanted[component_of[edges[:, 0]]]].tolist()} if len(edges) else set()
    missing = [(a, b) for number in numbers for i, a in enumerate(components[number])
               for b in components[number][i + 1:] if (a, b) not in known]
    return np.array(missing, dtype=np.int64).reshape(-1, 2)


def _components_within_budget(components: list[list[int]], edge_counts: np.ndarray, budget: int) -> set[int]:
    """Numbers of the chained components (3 to MAX_COMPONENT_CHECKED members) whose unmeasured pairs are
    measured: smallest first while the total stays within the budget (many small components split exactly
    rather than one large one)."""
    chosen: set[int] = set()
    spent = 0
    for number in sorted(range(len(components)), key=lambda k: (len(components[k]), k)):
        size = len(components[number])
        if size <= 2:
            continue
        if size > MAX_COMPONENT_CHECKED:
            break
        to_measure = size * (size - 1) // 2 - int(edge_counts[number])
        if spent + to_measure > budget:
            continue
        chosen.add(number)
        spent += to_measure
    return chosen


def _greedy_cliques(nodes: np.ndarray, pairs: np.ndarray) -> list[list[int]]:
    """Best-connected nodes first; each joins the first clique it is linked to entirely, else starts one.

    nodes: the component's nodes, ascending; pairs: its links (a < b, each once). A clique the node is linked to
    entirely holds one of its neighbours, so only those cliques are tried, in the order they were opened (the
    first one wins, as when every clique was tried, which is quadratic in the component: one of 10⁵ nodes split
    into 10⁴ cliques could take 10⁹ tries). Neighbours are arrays (CSR), and a node's neighbours are marked in
    one boolean array while its cliques are tried."""
    size = len(nodes)
    ends = np.searchsorted(nodes, pairs.reshape(-1, 2).T.ravel())  # local numbers: a's then b's
    half = len(ends) // 2
    others = np.concatenate([ends[half:], ends[:half]])
    order = np.argsort(ends, kind="stable")
    neighbours = others[order]
    bounds = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.bincount(ends, minlength=size), out=bounds[1:])
    degree = np.diff(bounds)
    clique_of = np.full(size, -1, dtype=np.int64)
    cliques: list[list[int]] = []
    marked = np.zeros(size, dtype=bool)
    for node in np.lexsort((nodes, -degree)).tolist():  # by (-degree, node)
        mine = neighbours[bounds[node]:bounds[node + 1]]
        tried = clique_of[mine]
        marked[mine] = True
        for number in np.unique(tried[tried >= 0]).tolist():
            if marked[cliques[number]].all():
                cliques[number].append(node)
                clique_of[node] = number
                break
        else:
            clique_of[node] = len(cliques)
            cliques.append([node])
        marked[mine] = False
    return [sorted(nodes[c].tolist()) for c in cliques if len(c) > 1]
