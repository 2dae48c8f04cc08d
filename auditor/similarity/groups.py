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
    Each component keeps only its own edges: one shared set copied per component cost O(components × edges),
    and a call to judge per component cost its fixed overhead thousands of times (15 000 images: 36 of 72
    CPU-seconds of the whole decision)."""
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    components = connected(n, edges)
    budget = judged_pairs_budget(n) if budget is None else budget
    component_of = np.full(n, -1, dtype=np.int64)
    for number, component in enumerate(components):
        component_of[component] = number
    linked: list[set[tuple[int, int]]] = [set() for _ in components]
    for a, b in edges.tolist():
        linked[component_of[a]].add((min(a, b), max(a, b)))
    missing: list[tuple[int, int]] = []
    owner: list[int] = []
    unjudged = [number for number, c in enumerate(components) if len(c) > 2]
    if judge is not None:
        measured = _components_within_budget(components, linked, budget)
        unjudged = [number for number in unjudged if number not in measured]
        for number in sorted(measured):  # in component order, as before there was a budget
            component, own = components[number], linked[number]
            for i, a in enumerate(component):
                for b in component[i + 1:]:
                    if (a, b) not in own:
                        missing.append((a, b))
                        owner.append(number)
    if missing:
        pairs = np.array(missing, dtype=np.int64)
        for pair, number, ok in zip(missing, owner, judge(pairs[:, 0], pairs[:, 1])):
            if ok:
                linked[number].add(pair)
    if stats is not None:
        stats.append(SplitStats(components=sum(len(c) > 2 for c in components), judged_pairs=len(missing),
                                budget=budget, unjudged_components=len(unjudged),
                                unjudged_images=sum(len(components[k]) for k in unjudged)))
    groups: list[list[int]] = []
    for number, component in enumerate(components):
        groups.extend([component] if len(component) == 2 else _greedy_cliques(component, linked[number]))
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def _components_within_budget(components: list[list[int]], linked: list[set[tuple[int, int]]],
                              budget: int) -> set[int]:
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
        to_measure = size * (size - 1) // 2 - len(linked[number])
        if spent + to_measure > budget:
            continue
        chosen.add(number)
        spent += to_measure
    return chosen


def _greedy_cliques(nodes: list[int], linked: set[tuple[int, int]]) -> list[list[int]]:
    """Best-connected nodes first; each joins the first clique it is linked to entirely, else starts one."""
    # Degrees from the links themselves (each is a pair of this component's nodes): asking is_linked for every
    # two nodes cost 22·10⁶ set lookups on 60 000 32 px crops, a third of the time of splitting chains.
    neighbours: dict[int, set[int]] = {node: set() for node in nodes}
    for a, b in linked:
        neighbours[a].add(b)
        neighbours[b].add(a)
    cliques: list[list[int]] = []
    clique_of: dict[int, int] = {}
    for node in sorted(nodes, key=lambda a: (-len(neighbours[a]), a)):
        # A clique the node is linked to entirely holds one of its neighbours, so only those cliques are tried,
        # in the order they were opened (the first one wins, as when every clique was tried, which is quadratic in
        # the component: one of 10⁵ nodes split into 10⁴ cliques could take 10⁹ tries).
        mine = neighbours[node]
        for number in sorted({clique_of[m] for m in mine if m in clique_of}):
            if all(other in mine for other in cliques[number]):
                cliques[number].append(node)
                clique_of[node] = number
                break
        else:
            clique_of[node] = len(cliques)
            cliques.append([node])
    return [sorted(c) for c in cliques if len(c) > 1]
