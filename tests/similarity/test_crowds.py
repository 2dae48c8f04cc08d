"""Crowds of one picture's copies (frames of a clip, burst shots): found by the gap after them in an image's sorted
neighbour cosines (`crowds.crowd_backgrounds`), judged against the images beyond them, every member a candidate."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.similarity import crowds as cr
from auditor.similarity import evidence as ev
from auditor.similarity import neighbours as nb


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clips_and_look_alikes(seed: int = 0, clips: int = 3, frames: int = 20, look_alikes: int = 300) -> np.ndarray:
    """`clips` crowds of `frames` near-identical vectors (cosines ≈ 0.95 among them, ≈ 0.3 to anything else), then a
    crowd of look-alikes that thins out: vectors around one centre at spread noise levels (cosines from ≈ 0.98 down
    to ≈ 0.6, no gap), then unrelated vectors."""
    rng = np.random.default_rng(seed)
    d = 64
    rows = []
    for _ in range(clips):
        centre = rng.normal(size=d)
        rows += [centre + rng.normal(scale=0.16, size=d) for _ in range(frames)]
    centre = rng.normal(size=d)
    for noise in np.linspace(0.1, 1.2, look_alikes):
        rows.append(centre + rng.normal(scale=noise, size=d))
    rows += list(rng.normal(size=(200, d)))
    return unit(np.array(rows))


def backgrounds(x: np.ndarray) -> tuple[np.ndarray, cr.Crowds]:
    graph = nb.knn(x, ev.BACKGROUND_RANK + 1)
    return cr.crowd_backgrounds(x, x, graph, np.arange(len(x)), graph[1])


def test_a_crowd_of_copies_is_judged_against_the_images_beyond_it():
    x = clips_and_look_alikes()
    plain = ev._backgrounds(*nb.knn(x, ev.BACKGROUND_RANK + 1), np.arange(len(x)))
    background, crowds = backgrounds(x)
    frames = np.arange(60)
    assert (plain[frames] > 0.9).all()  # the 10th neighbour of a frame is a frame: every scaled cosine collapses
    assert (background[frames] < 0.5).all()  # now the 10th image beyond its clip
    assert crowds.in_crowds == 60 and crowds.as_dict()["largest_crowd"] == 20
    others = np.arange(60, len(x))
    np.testing.assert_array_equal(background[others], plain[others])  # a thinning crowd of look-alikes: unchanged
    assert crowds.eligible > 60  # look-alikes were examined too (10th neighbour ≥ CROWD_MIN_COSINE), none taken


def test_every_fellow_member_is_a_candidate_and_no_outsider_is():
    x = clips_and_look_alikes()
    _background, crowds = backgrounds(x)
    members = crowds.members
    clip = np.arange(len(x)) // 20
    assert (clip[members.query] == clip[members.target]).all()
    assert (members.query != members.target).all()
    per_frame = np.bincount(members.query, minlength=60)[:60]
    assert (per_frame == 19).all()
    assert (members.rank[members.query == 0] == np.arange(19)).all()  # ranked as the neighbours are


def test_a_crowd_the_depth_cannot_see_past_stays_as_it_was(monkeypatch):
    # 70 frames each as near every other (no structure among them): each one's neighbourhood reaches more than
    # CROWD_DEPTH images in CLOSED_HOPS steps, so none is even searched (a known limit: a photo stored a hundred times
    # alike keeps its collapsed scores); and searched anyway CROWD_DEPTH deep, no fall shows.
    frames = cr.CROWD_DEPTH + 6
    x = clips_and_look_alikes(clips=1, frames=frames)
    plain = ev._backgrounds(*nb.knn(x, ev.BACKGROUND_RANK + 1), np.arange(len(x)))
    background, crowds = backgrounds(x)
    assert crowds.members is None or not np.isin(np.arange(frames), crowds.members.query).any()
    np.testing.assert_array_equal(background[:frames], plain[:frames])
    monkeypatch.setattr(cr, "_crowd_depths", lambda labels, nodes, graph: np.full(len(labels), cr.CROWD_DEPTH))
    background, crowds = backgrounds(x)
    assert crowds.examined >= frames
    assert crowds.members is None or not np.isin(np.arange(frames), crowds.members.query).any()


def test_copies_of_a_frame_are_judged_as_the_frames_are(monkeypatch):
    x = clips_and_look_alikes()
    rng = np.random.default_rng(5)
    copies = unit(x[:3] + rng.normal(scale=0.01, size=x[:3].shape))
    found = nb.knn(x, ev.BACKGROUND_RANK + 1, queries=copies)
    none = np.full(3, -1, dtype=np.int64)
    background, crowds = cr.crowd_backgrounds(x, copies, found, none, nb.knn(x, ev.BACKGROUND_RANK + 1)[1])
    assert (background < 0.5).all()
    assert crowds.in_crowds == 3 and (np.bincount(crowds.members.query) == 20).all()  # the whole clip, source included


def test_above_the_exact_limit_a_sample_is_examined_first(monkeypatch):
    x = clips_and_look_alikes(clips=0)  # look-alikes only: nothing to find
    monkeypatch.setattr(nb, "EXACT_LIMIT", 100)
    monkeypatch.setattr(cr, "CROWD_SAMPLE", 40)
    examined: list[int] = []
    real = cr._crowd_gaps
    monkeypatch.setattr(cr, "_crowd_gaps", lambda u, q, rows, s: examined.append(len(rows)) or real(u, q, rows, s))
    _background, crowds = backgrounds(x)
    assert examined == [40] and crowds.examined == 40 and crowds.eligible > 40 and crowds.as_dict()["sampled_first"]
    assert crowds.members is None
    examined.clear()
    _background, crowds = backgrounds(clips_and_look_alikes())  # the sample holds frames: every eligible image then
    assert examined[0] == 40 and examined[1] == crowds.eligible == crowds.examined and crowds.in_crowds == 60


@pytest.mark.parametrize("n", [5, 11])
def test_too_few_images_for_a_crowd(n):
    x = clips_and_look_alikes()[:n]
    graph = nb.knn(x, min(n, ev.BACKGROUND_RANK + 1))
    plain = ev._backgrounds(*graph, np.arange(n))
    background, crowds = cr.crowd_backgrounds(x, x, graph, np.arange(n), graph[1])
    np.testing.assert_array_equal(background, plain)
    assert crowds.members is None


def test_above_the_budget_a_crowd_found_through_one_member_is_every_members(monkeypatch):
    x = clips_and_look_alikes()
    exact_background, exact = backgrounds(x)
    monkeypatch.setattr(nb, "EXACT_LIMIT", 100)
    monkeypatch.setattr(cr, "CROWD_SAMPLE", 20)
    monkeypatch.setattr(cr, "CROWD_BUDGET", 40)
    background, crowds = backgrounds(x)
    assert crowds.examined == 40 < crowds.eligible and crowds.as_dict()["sampled_first"]
    assert crowds.in_crowds == 60  # the 3 clips, though at most 40 of the eligible images were searched
    members = crowds.members
    clip = np.arange(len(x)) // 20
    assert (clip[members.query] == clip[members.target]).all() and (members.query != members.target).all()
    assert (np.bincount(members.query, minlength=60)[:60] == 19).all()
    # Each unsearched frame has its finder's background beyond the crowd: the same images beyond, within noise.
    np.testing.assert_allclose(background[:60], exact_background[:60], atol=0.1)
    plain = ev._backgrounds(*nb.knn(x, ev.BACKGROUND_RANK + 1), np.arange(len(x)))  # approximate here, as above
    np.testing.assert_array_equal(background[60:], plain[60:])


def test_above_the_exact_limit_crowds_are_screened_then_searched_again_thoroughly(monkeypatch):
    """The approximate deeper search is screened cheaply; only the queries it calls crowds are searched again at the
    largest refine factor, and that search decides: a fall the screen made up (a missed neighbour) is no crowd."""
    x = clips_and_look_alikes()
    monkeypatch.setattr(nb, "EXACT_LIMIT", 100)
    look_alike = 60  # the first look-alike: its neighbours thin out, no gap
    real = nb.knn
    calls: list[tuple[int, int | None]] = []

    def knn(unit_vectors, k, queries=None, among=None, refine_factor=None):
        sims, labels = real(unit_vectors, k, queries=queries, among=among, refine_factor=refine_factor)
        if queries is not None and k > ev.BACKGROUND_RANK + 1:
            calls.append((len(queries), refine_factor))
            if refine_factor == cr.CROWD_SCREEN_REFINE:
                # The screen misses every neighbour of the look-alike past its 12th: a fall that is not there.
                hit = np.flatnonzero(np.abs(queries @ x[look_alike] - 1.0) < 1e-5)
                sims, labels = sims.copy(), labels.copy()
                sims[hit, 13:] = 0.0
        return sims, labels

    monkeypatch.setattr(nb, "knn", knn)
    background, crowds = backgrounds(x)
    assert calls[0][1] == cr.CROWD_SCREEN_REFINE and calls[0][0] == crowds.examined
    assert calls[1] == (61, nb.MAX_REFINE_FACTOR)  # the 60 frames and the look-alike the screen called a crowd
    assert crowds.in_crowds == 60 and look_alike not in crowds.members.query
    assert (background[:60] < 0.5).all()


def reference_depths(labels: np.ndarray, self_nodes: np.ndarray, graph: np.ndarray) -> np.ndarray:
    """What `_crowd_depths` says, one query at a time with sets: 0 where its neighbours reach more than CROWD_DEPTH
    images in CLOSED_HOPS steps; else m where the images it reaches, however many steps, are m (besides itself),
    CROWD_DEPTH < m ≤ CROWD_LARGEST, and every one of them reaches back to it (a query that is no row of the graph:
    its neighbours reach one such set, each of them every other); else CROWD_DEPTH."""
    width = ev.BACKGROUND_RANK + 1

    def out_of(node: int) -> set[int]:
        return {int(v) for v in graph[node, :width] if v >= 0}

    def reached_from(start: set[int], limit: int) -> set[int]:
        reached, frontier = set(start), set(start)
        while frontier and len(reached) <= limit:
            frontier = {v for f in frontier for v in out_of(f)} - reached
            reached |= frontier
        return reached

    def reaches_back(members: set[int]) -> bool:  # every member reaches every other: one component
        first = next(iter(members))
        back, frontier = {first}, {first}
        while frontier:
            frontier = {u for u in members if out_of(u) & frontier} - back
            back |= frontier
        return back == members and reached_from({first}, len(members) + 1) == members

    out = []
    for row, node in zip(labels, self_nodes):
        start = {int(v) for v in row[:width] if v >= 0}
        three = set(start)
        frontier = set(start)
        for _hop in range(cr.CLOSED_HOPS - 1):
            frontier = {v for f in frontier for v in out_of(f)}
            three |= frontier
        if len(three - {int(node)}) > cr.CROWD_DEPTH:
            out.append(0)
            continue
        members = reached_from(start | ({int(node)} if node >= 0 else set()), cr.CROWD_LARGEST + 1)
        closed = len(members) <= cr.CROWD_LARGEST + 1 and all(out_of(u) <= members for u in members)
        m = len(members - {int(node)})
        deep = closed and reaches_back(members) and cr.CROWD_DEPTH < m <= cr.CROWD_LARGEST
        out.append(m if deep else cr.CROWD_DEPTH)
    return np.array(out)


def ring_of_groups(rng: np.random.Generator, first: int, groups: int, size: int) -> np.ndarray:
    """Graph rows of nodes first … first + groups·size: each node's 11 neighbours itself, 8 of its group and one of
    each neighbouring group on a ring — a crowd whose neighbourhood closes only after several steps."""
    rows = []
    for g in range(groups):
        members = first + g * size + np.arange(size)
        for node in members:
            mates = rng.choice(members[members != node], 8, replace=False)
            sides = [first + ((g + d) % groups) * size + int(rng.integers(size)) for d in (-1, 1)]
            rows.append([node, *mates, *sides])
    return np.array(rows)


@pytest.mark.parametrize("seed", [0, 1])
def test_crowd_depths_match_a_plain_reading(seed):
    rng = np.random.default_rng(seed)
    n = 3_000
    graph = rng.integers(0, n, (n, 11))
    for start in range(0, n // 2, 25):  # cliques of 25 (closed) and of 70 (closed, but more than CROWD_DEPTH)
        size = 25 if start % 50 == 0 else 70
        graph[start:start + 25] = rng.choice(np.arange(start, start + size), (25, 11))
    graph[1500:1620] = ring_of_groups(rng, 1500, 12, 10)  # 120 images that close after some steps
    graph[1620:2220] = ring_of_groups(rng, 1620, 60, 10)  # 600: closes beyond CROWD_LARGEST
    graph[:, 0] = np.arange(n)  # a node is usually its own first neighbour
    graph[rng.random(graph.shape) < 0.02] = -1  # and some rows are short
    nodes = np.arange(n)
    got = cr._crowd_depths(graph, nodes, graph)
    np.testing.assert_array_equal(got, reference_depths(graph, nodes, graph))
    assert set(np.unique(got)) >= {0, cr.CROWD_DEPTH} and (got[1500:1620] > cr.CROWD_DEPTH).mean() > 0.9
    assert (got[1620:2220] <= cr.CROWD_DEPTH).all()
    copies = graph[rng.integers(0, n, 500)]  # queries that are no row of the graph (calibration copies)
    np.testing.assert_array_equal(cr._crowd_depths(copies, np.full(500, -1), graph),
                                  reference_depths(copies, np.full(500, -1), graph))


def grid_clip(seed: int, side: int = 11, d: int = 64) -> np.ndarray:
    """side² frames of one picture moved over a grid of offsets (a clip panning both ways): each frame nearest to
    the frames beside it, so its neighbourhood grows step by step until it holds the whole clip."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=d)
    centre /= np.linalg.norm(centre)
    u, v = rng.normal(size=(2, d))
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    return np.array([centre + 0.05 * (i * u + j * v) + rng.normal(scale=0.01, size=d)
                     for i in range(side) for j in range(side)])


def test_a_crowd_larger_than_the_depth_is_searched_as_deep_as_its_neighbourhood_closes():
    x = unit(np.vstack([grid_clip(seed=5), clips_and_look_alikes(clips=0)]))
    frames = np.arange(121)
    plain = ev._backgrounds(*nb.knn(x, ev.BACKGROUND_RANK + 1), np.arange(len(x)))
    background, crowds = backgrounds(x)
    assert crowds.as_dict()["deepest"] > cr.CROWD_DEPTH
    graph = nb.knn(x, ev.BACKGROUND_RANK + 1)[1]
    assert (cr._crowd_depths(graph[frames], frames, graph) == 0).sum() >= 10  # some reach past 64 in three steps …
    found = np.unique(crowds.members.query)
    np.testing.assert_array_equal(found, frames)  # … and take the crowd from the frames that found it
    assert np.isin(crowds.members.target, frames).all()
    assert (np.bincount(crowds.members.query)[found] >= 119).all()  # every other frame of the clip (a finder's list)
    assert (plain[found] > 0.9).all() and (background[found] < 0.5).all()
    others = np.arange(121, len(x))
    np.testing.assert_array_equal(background[others], plain[others])


def test_copies_of_a_one_image_dataset_are_searched_without_a_crowd_search():
    # One image has no k-NN graph of its own: its copies are judged against it plainly (no crowd, no graph read).
    rng = np.random.default_rng(0)
    x = unit(rng.normal(size=(1, 16)))
    data = ev.make_dataset(x, rng.integers(0, 256, (1, 32, 32), dtype=np.uint8))
    assert data.neighbours is None and data.crowds is None
    pairs = ev.search(data, unit(x + rng.normal(scale=0.05, size=(3, 16))), rng.integers(0, 256, (3, 32, 32),
                      dtype=np.uint8), 6, 6)
    assert (pairs.target == 0).all() and len(pairs.query) == 3 and (pairs.cosine > 0.9).all()


def test_a_graph_read_again_has_its_sink_components_computed_once(monkeypatch):
    """The copies' search reads the dataset's k-NN graph again: its sink components are remembered for that graph
    object, and a graph with other contents (another object) gets its own."""
    calls = []
    real = cr._sink_sizes
    monkeypatch.setattr(cr, "_sink_sizes", lambda graph: calls.append(1) or real(graph))
    x = unit(clips_and_look_alikes())
    sims, labels = nb.knn(x, 12)
    first = cr._sinks_of(labels)
    again = cr._sinks_of(labels)
    assert len(calls) == 1 and again is first
    shuffled = labels.copy()
    shuffled[:, 1:] = labels[:, 1:][:, ::-1]
    cr._sinks_of(shuffled)
    assert len(calls) == 2
    np.testing.assert_array_equal(first[1], real(labels[:, :cr.BACKGROUND_RANK + 1])[1])


def test_the_crowds_members_are_crowd_sightings_and_survive_the_search_that_merges_them():
    x = unit(clips_and_look_alikes())
    data = ev.make_dataset(x, np.random.default_rng(0).integers(0, 256, (len(x), 32, 32), dtype=np.uint8))
    members = data.crowds.members
    assert members is not None and members.crowd
    before = members.query.copy()
    pairs = ev.search(data, x, data.thumbs, max_phash=0, max_dhash=0, self_nodes=np.arange(len(x)))
    np.testing.assert_array_equal(data.crowds.members.query, before)  # merged from a copy, not consumed
    assert pairs.crowd_mate is not None and pairs.crowd_mate.any()
