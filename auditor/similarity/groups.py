"""Duplicate groups that do not chain.

Connected components of "is a duplicate of" edges chain: A≈B, B≈C, …, puts 77 different silver cars in one
group when each resembles the next. Here a group is a set of images that are *all* duplicates of each other:
inside each connected component, every pair is judged by the same rule (pairs that were not candidates are
measured on demand), and the component is split greedily into cliques of that relation.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

MAX_COMPONENT_CHECKED = 400  # beyond this, only the pairs already measured are used (cost grows as size²)


def connected(n: int, edges: np.ndarray) -> list[list[int]]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not len(edges) or n == 0:
        return []
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _count, labels = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for node, label in enumerate(labels):
        groups.setdefault(int(label), []).append(node)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def clique_groups(n: int, edges: np.ndarray,
                  judge: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> list[list[int]]:
    """Groups (node lists, size ≥ 2) in which every two members are duplicates.

    edges: (E, 2) accepted pairs. judge(a, b) → bool array: whether node pairs that are not edges are
    duplicates after all (measured on demand); None: only the given edges count."""
    accepted = {(int(min(a, b)), int(max(a, b))) for a, b in edges}
    groups: list[list[int]] = []
    for component in connected(n, np.asarray(edges, dtype=np.int64).reshape(-1, 2)):
        if len(component) == 2:
            groups.append(component)
            continue
        linked = set(accepted)
        if judge is not None and len(component) <= MAX_COMPONENT_CHECKED:
            missing = [(a, b) for i, a in enumerate(component) for b in component[i + 1:] if (a, b) not in accepted]
            if missing:
                pairs = np.array(missing, dtype=np.int64)
                for (a, b), ok in zip(missing, judge(pairs[:, 0], pairs[:, 1])):
                    if ok:
                        linked.add((a, b))
        groups.extend(_greedy_cliques(component, linked))
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def _greedy_cliques(nodes: list[int], linked: set[tuple[int, int]]) -> list[list[int]]:
    """Best-connected nodes first; each joins the first clique it is linked to entirely, else starts one."""
    def is_linked(a: int, b: int) -> bool:
        return (min(a, b), max(a, b)) in linked

    degree = {a: sum(is_linked(a, b) for b in nodes if b != a) for a in nodes}
    cliques: list[list[int]] = []
    for node in sorted(nodes, key=lambda a: (-degree[a], a)):
        for clique in cliques:
            if all(is_linked(node, other) for other in clique):
                clique.append(node)
                break
        else:
            cliques.append([node])
    return [sorted(c) for c in cliques if len(c) > 1]
