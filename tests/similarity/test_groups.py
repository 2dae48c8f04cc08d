"""Groups hold images that are all duplicates of each other: chains of similar images are split."""

from __future__ import annotations

import numpy as np

from auditor.similarity.groups import clique_groups, connected


def test_a_chain_is_split_into_cliques():
    # 0-1-2-3-4: each resembles the next (an accepted edge), but no two images two links apart are duplicates.
    edges = np.array([[0, 1], [1, 2], [2, 3], [3, 4]])
    assert connected(5, edges) == [[0, 1, 2, 3, 4]]  # what connected components would report
    groups = clique_groups(5, edges, judge=lambda a, b: np.zeros(len(a), dtype=bool))
    assert all(len(g) == 2 for g in groups)
    assert all(b == a + 1 for a, b in groups)  # only adjacent links survive, no group spans the chain


def test_a_true_group_stays_whole_when_the_judge_confirms_every_pair():
    edges = np.array([[0, 1], [1, 2], [5, 6]])
    groups = clique_groups(7, edges, judge=lambda a, b: np.ones(len(a), dtype=bool))
    assert groups == [[0, 1, 2], [5, 6]]


def test_judge_is_asked_only_about_missing_pairs_inside_components():
    asked = []

    def judge(a, b):
        asked.extend(zip(a.tolist(), b.tolist()))
        return np.zeros(len(a), dtype=bool)

    clique_groups(6, np.array([[0, 1], [1, 2], [4, 5]]), judge)
    assert asked == [(0, 2)]


def test_no_edges_no_groups():
    assert clique_groups(3, np.zeros((0, 2), dtype=np.int64)) == []


def test_all_components_are_judged_in_one_call_on_their_own_pairs_only():
    # 50 chains a–b–c: each component's missing pair (a, c) is judged, in one call, and nothing across components.
    edges = np.array([(3 * k, 3 * k + 1) for k in range(50)] + [(3 * k + 1, 3 * k + 2) for k in range(50)])
    calls = []

    def judge(a, b):
        calls.append((a.copy(), b.copy()))
        return (a // 3) % 2 == 0  # even chains are cliques after all, odd ones split

    groups = clique_groups(150, edges, judge)
    assert len(calls) == 1
    a, b = calls[0]
    assert sorted(zip(a.tolist(), b.tolist())) == [(3 * k, 3 * k + 2) for k in range(50)]
    assert [0, 1, 2] in groups and [3, 4] in groups and [4, 5] not in groups
    assert sum(len(g) == 3 for g in groups) == 25 and sum(len(g) == 2 for g in groups) == 25


def pairs_of(linked: set) -> np.ndarray:
    return np.array(sorted(linked), dtype=np.int64).reshape(-1, 2)


def _greedy_reference(nodes, linked):
    """The greedy split as first written: degrees by asking every two nodes."""
    is_linked = lambda a, b: (min(a, b), max(a, b)) in linked
    degree = {a: sum(is_linked(a, b) for b in nodes if b != a) for a in nodes}
    cliques = []
    for node in sorted(nodes, key=lambda a: (-degree[a], a)):
        for clique in cliques:
            if all(is_linked(node, other) for other in clique):
                clique.append(node)
                break
        else:
            cliques.append([node])
    return [sorted(c) for c in cliques if len(c) > 1]


def test_greedy_cliques_start_from_the_best_connected_nodes_as_first_written():
    from auditor.similarity.groups import _greedy_cliques

    rng = np.random.default_rng(0)
    for _ in range(30):
        nodes = sorted(rng.choice(100, size=int(rng.integers(3, 25)), replace=False).tolist())
        linked = {(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1:] if rng.random() < 0.5}
        assert _greedy_cliques(np.array(nodes), pairs_of(linked)) == _greedy_reference(nodes, linked)
    # a hub linked to everyone opens the first clique, which takes its best-connected partners
    assert _greedy_cliques(np.array([1, 2, 3, 4]), pairs_of({(1, 4), (2, 4), (3, 4), (1, 2)})) == [[1, 2, 4]]


def _chains(count: int, length: int, start: int = 0) -> list[tuple[int, int]]:
    return [(start + length * k + i, start + length * k + i + 1) for k in range(count) for i in range(length - 1)]


def test_pairs_judged_on_demand_stay_within_the_budget_smallest_components_first():
    from auditor.similarity.groups import SplitStats

    # Ten chains of 4 (3 missing pairs each) and one chain of 20 (171 missing pairs); a budget of 40 pairs
    # measures the ten small ones (30 pairs) and splits the long one on its own links only.
    edges = np.array(_chains(10, 4) + _chains(1, 20, start=40))
    asked, stats = [], []

    def judge(a, b):
        asked.extend(zip(a.tolist(), b.tolist()))
        return np.ones(len(a), dtype=bool)

    groups = clique_groups(60, edges, judge, budget=40, stats=stats)
    assert len(asked) == 30 and all(b < 40 for _a, b in asked)
    assert stats == [SplitStats(components=11, judged_pairs=30, budget=40, unjudged_components=1, unjudged_images=20)]
    assert [[4 * k, 4 * k + 1, 4 * k + 2, 4 * k + 3] for k in range(10)] == [g for g in groups if len(g) == 4]
    long_chain = [g for g in groups if g[0] >= 40]
    assert all(len(g) == 2 and g[1] == g[0] + 1 for g in long_chain)  # never chained, never merged unmeasured
    # with room for everything, the long chain is judged too and stays whole
    stats.clear()
    groups = clique_groups(60, edges, judge, budget=10_000, stats=stats)
    assert list(range(40, 60)) in groups and stats[0].unjudged_components == 0 and stats[0].judged_pairs == 201


def test_the_default_budget_grows_with_the_dataset():
    from auditor.similarity.groups import JUDGED_PAIRS_PER_IMAGE, MIN_JUDGED_PAIRS, judged_pairs_budget

    assert judged_pairs_budget(100) == MIN_JUDGED_PAIRS
    assert judged_pairs_budget(10**6) == JUDGED_PAIRS_PER_IMAGE * 10**6 > MIN_JUDGED_PAIRS


def test_greedy_split_of_a_large_component_matches_the_first_written_one():
    from auditor.similarity.groups import _greedy_cliques

    # Many small cliques joined by a few bridges: the neighbour-indexed search tries only cliques holding a
    # neighbour, and must pick the same first clique as trying every clique in order.
    rng = np.random.default_rng(1)
    nodes = list(range(300))
    linked = set()
    for start in range(0, 300, 5):
        block = list(range(start, start + 5))
        linked |= {(a, b) for i, a in enumerate(block) for b in block[i + 1:] if rng.random() < 0.8}
    linked |= {tuple(sorted(rng.choice(300, 2, replace=False).tolist())) for _ in range(200)}
    assert _greedy_cliques(np.array(nodes), pairs_of(linked)) == _greedy_reference(nodes, linked)


def test_groups_of_random_graphs_are_the_greedy_split_of_each_judged_component():
    # A readable reference: every component's missing pairs judged, links in a set, the first-written greedy split.
    rng = np.random.default_rng(5)
    for _ in range(20):
        n = int(rng.integers(5, 80))
        edges = rng.integers(0, n, (int(rng.integers(1, 3 * n)), 2))
        truth = rng.integers(0, 4, n)  # pairs of nodes with the same "picture" are duplicates on demand
        judge = lambda a, b: truth[a] == truth[b]
        linked = {(min(a, b), max(a, b)) for a, b in edges.tolist() if a != b}
        expected = []
        for component in connected(n, np.array(sorted(linked)).reshape(-1, 2)):
            own = {(a, b) for a, b in linked if a in component}
            own |= {(a, b) for i, a in enumerate(component) for b in component[i + 1:] if judge(a, b)}
            expected.extend([component] if len(component) == 2 else _greedy_reference(component, own))
        expected.sort(key=lambda g: (-len(g), g[0]))
        assert clique_groups(n, edges, judge) == expected
