"""Crowds of one picture's copies (frames of a clip, burst shots): found by the gap after them in an image's sorted
neighbour cosines (`evidence.crowd_backgrounds`), judged against the images beyond them, every member a candidate."""

from __future__ import annotations

import numpy as np
import pytest

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


def backgrounds(x: np.ndarray) -> tuple[np.ndarray, ev.Crowds]:
    graph = nb.knn(x, ev.BACKGROUND_RANK + 1)
    return ev.crowd_backgrounds(x, x, graph, np.arange(len(x)), graph[1])


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
    # 70 frames: their neighbourhoods reach more than CROWD_DEPTH images, so none is even searched (a known limit:
    # a photo stored a hundred times keeps its collapsed scores); and searched anyway, no fall shows within 64.
    frames = ev.CROWD_DEPTH + 6
    x = clips_and_look_alikes(clips=1, frames=frames)
    plain = ev._backgrounds(*nb.knn(x, ev.BACKGROUND_RANK + 1), np.arange(len(x)))
    background, crowds = backgrounds(x)
    assert crowds.members is None or not np.isin(np.arange(frames), crowds.members.query).any()
    np.testing.assert_array_equal(background[:frames], plain[:frames])
    monkeypatch.setattr(ev, "_closed", lambda labels, nodes, graph: np.ones(len(labels), dtype=bool))
    background, crowds = backgrounds(x)
    assert crowds.examined >= frames
    assert crowds.members is None or not np.isin(np.arange(frames), crowds.members.query).any()


def test_copies_of_a_frame_are_judged_as_the_frames_are(monkeypatch):
    x = clips_and_look_alikes()
    rng = np.random.default_rng(5)
    copies = unit(x[:3] + rng.normal(scale=0.01, size=x[:3].shape))
    found = nb.knn(x, ev.BACKGROUND_RANK + 1, queries=copies)
    none = np.full(3, -1, dtype=np.int64)
    background, crowds = ev.crowd_backgrounds(x, copies, found, none, nb.knn(x, ev.BACKGROUND_RANK + 1)[1])
    assert (background < 0.5).all()
    assert crowds.in_crowds == 3 and (np.bincount(crowds.members.query) == 20).all()  # the whole clip, source included


def test_above_the_exact_limit_a_sample_is_examined_first(monkeypatch):
    x = clips_and_look_alikes(clips=0)  # look-alikes only: nothing to find
    monkeypatch.setattr(nb, "EXACT_LIMIT", 100)
    monkeypatch.setattr(ev, "CROWD_SAMPLE", 40)
    examined: list[int] = []
    real = ev._crowd_gaps
    monkeypatch.setattr(ev, "_crowd_gaps", lambda u, q, rows, s: examined.append(len(rows)) or real(u, q, rows, s))
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
    background, crowds = ev.crowd_backgrounds(x, x, graph, np.arange(n), graph[1])
    np.testing.assert_array_equal(background, plain)
    assert crowds.members is None


def test_above_the_budget_a_crowd_found_through_one_member_is_every_members(monkeypatch):
    x = clips_and_look_alikes()
    exact_background, exact = backgrounds(x)
    monkeypatch.setattr(nb, "EXACT_LIMIT", 100)
    monkeypatch.setattr(ev, "CROWD_SAMPLE", 20)
    monkeypatch.setattr(ev, "CROWD_BUDGET", 40)
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
            if refine_factor == ev.CROWD_SCREEN_REFINE:
                # The screen misses every neighbour of the look-alike past its 12th: a fall that is not there.
                hit = np.flatnonzero(np.abs(queries @ x[look_alike] - 1.0) < 1e-5)
                sims, labels = sims.copy(), labels.copy()
                sims[hit, 13:] = 0.0
        return sims, labels

    monkeypatch.setattr(nb, "knn", knn)
    background, crowds = backgrounds(x)
    assert calls[0][1] == ev.CROWD_SCREEN_REFINE and calls[0][0] == crowds.examined
    assert calls[1] == (61, nb.MAX_REFINE_FACTOR)  # the 60 frames and the look-alike the screen called a crowd
    assert crowds.in_crowds == 60 and look_alike not in crowds.members.query
    assert (background[:60] < 0.5).all()


def reference_closed(labels: np.ndarray, self_nodes: np.ndarray, graph: np.ndarray) -> np.ndarray:
    """What `_closed` says, one query at a time with sets: the images its neighbours reach in CLOSED_HOPS steps."""
    width = ev.BACKGROUND_RANK + 1
    out = []
    for row, node in zip(labels, self_nodes):
        frontier = {int(v) for v in row[:width] if v >= 0}
        reached = set(frontier)
        for _hop in range(ev.CLOSED_HOPS - 1):
            frontier = {int(v) for f in frontier for v in graph[f, :width] if v >= 0}
            reached |= frontier
        out.append(len(reached - {int(node)}) <= ev.CROWD_DEPTH)
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_closed_neighbourhood_test_matches_a_plain_reading(seed):
    rng = np.random.default_rng(seed)
    n = 3_000
    graph = rng.integers(0, n, (n, 11))
    for start in range(0, n // 2, 25):  # cliques of 25 (closed) and of 70 (closed, but more than CROWD_DEPTH)
        size = 25 if start % 50 == 0 else 70
        graph[start:start + 25] = rng.choice(np.arange(start, start + size), (25, 11))
    graph[:, 0] = np.arange(n)  # a node is usually its own first neighbour
    graph[rng.random(graph.shape) < 0.02] = -1  # and some rows are short
    nodes = np.arange(n)
    got = ev._closed(graph, nodes, graph)
    np.testing.assert_array_equal(got, reference_closed(graph, nodes, graph))
    assert 0 < got.sum() < n
    copies = graph[rng.integers(0, n, 500)]  # queries that are no row of the graph (calibration copies)
    np.testing.assert_array_equal(ev._closed(copies, np.full(500, -1), graph),
                                  reference_closed(copies, np.full(500, -1), graph))
