"""Duplicate groups that do not chain.

Connected components of "is a duplicate of" edges chain: A≈B, B≈C, …, puts 77 different silver cars in one
group when each resembles the next. Here a group is a set of images that are *all* duplicates of each other:
inside each connected component, every pair is judged by the same rule (pairs that were not candidates are
measured on demand), and the component is split into cliques of that relation, strongest evidence first.

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
                  budget: int | None = None, stats: list[SplitStats] | None = None,
                  strength: np.ndarray | None = None) -> list[list[int]]:
    """Groups (node lists, size ≥ 2) in which every two members are duplicates.

    edges: (E, 2) accepted pairs; strength: how strong each one's evidence is (default: all alike), which decides
    which duplicates a node is grouped with where it cannot join all of them. judge(a, b) → bool array: whether
    node pairs that are not edges are duplicates after all (measured on demand, all components' pairs in one call;
    they link members like edges, weakest of all); None: only the given edges count. budget: at most this many
    pairs judged (default `judged_pairs_budget(n)`); components are taken smallest first while their pairs fit.
    stats: a list the `SplitStats` is appended to. Each component is split on its own links (`_strongest_first`),
    a run of one sorted array; judge is called once for all components (once per component cost its fixed overhead
    thousands of times: 15 000 images, 36 of 72 CPU-seconds of the whole decision)."""
    edges, strength = _one_link_per_pair(edges, strength)
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
    link_strength = np.concatenate([strength, np.full(len(judged), -np.inf)])
    order = np.argsort(component_of[linked[:, 0]], kind="stable")  # each component's links, one run each
    linked, link_strength = linked[order], link_strength[order]
    run_starts = np.searchsorted(component_of[linked[:, 0]], np.arange(len(components) + 1))
    groups: list[list[int]] = []
    for number, component in enumerate(components):
        if len(component) == 2:
            groups.append(component)
        else:
            run = slice(run_starts[number], run_starts[number + 1])
            groups.extend(_strongest_first(np.asarray(component, dtype=np.int64), linked[run], link_strength[run]))
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def _one_link_per_pair(edges: np.ndarray, strength: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Edges as (a < b) pairs, each once (with its strongest evidence), without a node's link to itself; sorted."""
    edges = np.sort(np.asarray(edges, dtype=np.int64).reshape(-1, 2), axis=1)
    strength = np.zeros(len(edges)) if strength is None else np.asarray(strength, dtype=np.float64)
    keep = edges[:, 0] != edges[:, 1]
    edges, strength = edges[keep], strength[keep]
    order = np.lexsort((-strength, edges[:, 1], edges[:, 0]))
    edges, strength = edges[order], strength[order]
    first = np.r_[True, np.any(edges[1:] != edges[:-1], axis=1)] if len(edges) else np.zeros(0, dtype=bool)
    return edges[first], strength[first]


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


def _strongest_first(nodes: np.ndarray, pairs: np.ndarray, strength: np.ndarray) -> list[list[int]]:
    """Cliques of a component's links, merged strongest link first: each link joins its two ends' cliques where
    every member of one is linked to every member of the other (complete linkage), else is left out.

    nodes: the component's nodes, ascending; pairs: its links (a < b, each once), strength: one per link (ties: in
    (a, b) order). Why by strength: a copy of a training photo that also resembles another held-out copy only
    weakly (an embedding-only pair just over the rule, between a rotated copy of one photo and a re-processed copy
    of another) must stay with its own photo; grouping best-connected nodes first put the two copies together and
    left both photos alone, so neither copy counted as a leak (the 25-image set of bench_truth.py built from other
    photos: 2 of 12 leaks lost). Links between cliques are counted as cliques merge (the smaller one's counts
    folded into the larger's), so a merge is checked in one look-up."""
    size = len(nodes)
    local = np.searchsorted(nodes, pairs.reshape(-1, 2))
    owner = list(range(size))
    members: list[list[int] | None] = [[node] for node in range(size)]
    links: list[dict[int, int] | None] = [{} for _ in range(size)]
    for a, b in local.tolist():
        links[a][b] = links[a].get(b, 0) + 1
        links[b][a] = links[b].get(a, 0) + 1
    for a, b in local[np.lexsort((local[:, 1], local[:, 0], -strength))].tolist():
        big, small = owner[a], owner[b]
        if big == small or links[big].get(small, 0) != len(members[big]) * len(members[small]):
            continue
        if len(members[big]) < len(members[small]):
            big, small = small, big
        for other, count in links[small].items():
            if other != big:
                links[big][other] = links[big].get(other, 0) + count
                links[other][big] = links[other].get(big, 0) + count
                del links[other][small]
        del links[big][small]
        for node in members[small]:
            owner[node] = big
        members[big].extend(members[small])
        members[small], links[small] = None, None
    return [sorted(nodes[m].tolist()) for m in members if m is not None and len(m) > 1]
