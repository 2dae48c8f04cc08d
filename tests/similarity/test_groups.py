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


def _is_clique(group, linked) -> bool:
    return all((a, b) in linked for i, a in enumerate(group) for b in group[i + 1:])


def test_a_copy_stays_with_its_own_photo_where_a_weak_link_joins_two_copies():
    # photo 0 ≈ copy 1 (strong), photo 3 ≈ copy 2 (strong), copy 1 ≈ copy 2 (just over the rule): best-connected
    # nodes first grouped the two copies and left both photos alone
    edges = np.array([[0, 1], [1, 2], [2, 3]])
    groups = clique_groups(4, edges, judge=lambda a, b: np.zeros(len(a), dtype=bool), strength=np.array([1.8, 0.9, 1.7]))
    assert groups == [[0, 1], [2, 3]]
    # the weak link first: then it wins, as the evidence says
    assert clique_groups(4, edges, strength=np.array([0.5, 0.9, 0.4])) == [[1, 2]]


def test_the_strongest_links_decide_where_a_hub_goes():
    pairs = pairs_of({(1, 2), (1, 4), (2, 4), (3, 4)})  # 1, 2, 4 all linked; 3 linked to 4 only
    assert clique_groups(5, pairs) == [[1, 2, 4]]  # alike: in (a, b) order
    assert clique_groups(5, pairs, strength=np.array([0.9, 0.2, 0.3, 0.1])) == [[1, 2, 4]]
    assert clique_groups(5, pairs, strength=np.array([0.1, 0.2, 0.3, 0.9])) == [[1, 2], [3, 4]]  # 3 ≈ 4 strongest


def test_a_pair_given_twice_keeps_its_strongest_evidence():
    edges = np.array([[1, 0], [0, 1], [1, 2], [2, 3]])
    assert clique_groups(4, edges, strength=np.array([0.1, 2.0, 1.0, 0.5])) == [[0, 1], [2, 3]]


def test_strongest_first_groups_are_disjoint_cliques_of_the_links_on_random_graphs():
    rng = np.random.default_rng(5)
    for _ in range(30):
        n = int(rng.integers(5, 80))
        edges = rng.integers(0, n, (int(rng.integers(1, 3 * n)), 2))
        truth = rng.integers(0, 4, n)  # pairs of nodes with the same "picture" are duplicates on demand
        judge = lambda a, b: truth[a] == truth[b]
        strength = rng.random(len(edges))
        groups = clique_groups(n, edges, judge, strength=strength)
        linked = {(min(a, b), max(a, b)) for a, b in edges.tolist() if a != b}
        for component in connected(n, np.array(sorted(linked)).reshape(-1, 2)):
            if len(component) > 2:
                linked |= {(a, b) for i, a in enumerate(component) for b in component[i + 1:] if judge(a, b)}
        members = [node for group in groups for node in group]
        assert len(members) == len(set(members))  # disjoint
        assert all(len(g) >= 2 and g == sorted(g) and _is_clique(g, linked) for g in groups)
        strongest = np.argmax(np.where(edges[:, 0] != edges[:, 1], strength, -1))
        a, b = sorted(edges[strongest].tolist())
        assert any(a in g and b in g for g in groups)  # the strongest link's ends are always together


def test_pictures_linked_strongly_within_and_weakly_across_come_out_whole():
    # 40 images of 8 pictures; every pair within a picture a candidate or judged on demand, strong; look-alike
    # links across pictures weak: each picture is one group, whatever the look-alikes
    rng = np.random.default_rng(6)
    picture = rng.permutation(np.repeat(np.arange(8), 5))
    same = [(a, b) for a in range(40) for b in range(a + 1, 40) if picture[a] == picture[b]]
    within = [pair for pair in same if rng.random() < 0.6]
    across = [(a, b) for a in range(40) for b in range(a + 1, 40) if picture[a] != picture[b] and rng.random() < 0.05]
    edges = np.array(within + across)
    strength = np.r_[rng.uniform(1.0, 2.0, len(within)), rng.uniform(0.0, 0.9, len(across))]
    groups = clique_groups(40, edges, judge=lambda a, b: picture[a] == picture[b], strength=strength)
    assert sorted(groups) == sorted(sorted(np.flatnonzero(picture == k).tolist()) for k in range(8))


def test_a_large_component_is_split_in_linear_time():
    import time

    # 20 000 nodes in cliques of 5, chained by 20 000 weak bridges (one component, split on its own links)
    blocks = [(start + i, start + j) for start in range(0, 20_000, 5) for i in range(5) for j in range(i + 1, 5)]
    rng = np.random.default_rng(7)
    bridges = [tuple(sorted(rng.choice(20_000, 2, replace=False).tolist())) for _ in range(20_000)]
    edges = np.array(blocks + bridges)
    strength = np.r_[np.ones(len(blocks)), np.zeros(len(bridges))]
    started = time.process_time()
    groups = clique_groups(20_000, edges, strength=strength)
    assert sum(len(g) == 5 for g in groups) >= 3_990
    assert time.process_time() - started < 5  # ≈ 0.5 s with the set-up; quadratic work would take minutes
