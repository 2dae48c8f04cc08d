"""Unit tests for auditor/duplicate_graph.py, on scans of real small images and fake embeddings."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from auditor.similarity.duplicate_graph import KIND_BIT, NO_SOURCE, DuplicateGraph, build_graph
from auditor.encoding.imaging import ScanLimits, scan_bytes

MAX_PHASH, MAX_DHASH = 6, 10


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def gradient_image() -> Image.Image:
    """Asymmetric, so its mirror image hashes far from it; small, so hashing does not resample."""
    yy, xx = np.mgrid[0:96, 0:128]
    return Image.fromarray(np.stack([xx * 2, yy * 2, (xx * yy) % 256], axis=-1).astype(np.uint8))


def smooth_image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((128, 96), Image.Resampling.BICUBIC)


FILES: dict[str, bytes] = {}


@pytest.fixture(scope="module")
def family():
    """name → scan. The a_* images are copies of one picture; b, c, d are unrelated pictures."""
    a = gradient_image()
    files = {
        "a_png": encode(a, "PNG"),
        "a_bmp": encode(a, "BMP"),  # same pixels, other bytes
        "a_small": encode(a.resize((100, 75), Image.Resampling.LANCZOS), "JPEG", quality=85),
        "a_mirror": encode(ImageOps.mirror(a), "PNG"),
        "b": encode(smooth_image(1), "PNG"),
        "c": encode(smooth_image(2), "PNG"),
        "d": encode(smooth_image(3), "PNG"),
    }
    FILES.update(files)
    scans = {name: scan_bytes(data, ScanLimits())[0] for name, data in files.items()}
    assert all(s.usable for s in scans.values())
    assert len({s.sha256 for s in scans.values()}) == len(scans)
    return scans


@pytest.fixture
def embeddings(family):
    """Fake vectors: cos(b, c) = 0.95, cos(c, d) ≈ 0.89, cos(b, d) = 0.7, cos(a_png, a_small) = 0.6."""
    vectors = {
        "a_png": [0, 0, 1, 0],
        "a_small": [0, 0, 0.6, 0.8],
        "b": [1, 0, 0, 0],
        "c": [0.95, np.sqrt(1 - 0.95**2), 0, 0],
        "d": [0.7, np.sqrt(1 - 0.7**2), 0, 0],
    }  # a_bmp and a_mirror have none (as if not embedded yet)
    return {family[name].sha256: 3.0 * np.asarray(v, dtype=np.float32) for name, v in vectors.items()}  # not unit


def graph_of(family, names, embeddings=None, min_cosine=None):
    """The graph over `names`, with the decision calibrated on copies of the family's pictures (no backbone:
    fake embeddings where given, each copy's vector its source's, so the embedding tier cannot tell copies
    from sources and only a user's min_cosine makes it count)."""
    from auditor.similarity.engine import decide
    from auditor.similarity.pixels import decode_grey32
    from auditor.similarity.positives import copy_kinds, make_copy
    from auditor.similarity.neighbours import normalise

    shas = [family[n].sha256 for n in names]
    scans = {s.sha256: s for s in family.values()}
    thumbs = np.stack([decode_grey32(scans[s].grey32) for s in shas])
    have = embeddings is not None and all(s in embeddings for s in shas)
    unit = normalise(np.stack([embeddings[s] for s in shas])) if have else None
    copy_thumbs, source, kinds, vectors = [], [], [], []
    for node, name in enumerate(names):
        image = Image.open(io.BytesIO(FILES[name])).convert("RGB")
        for k, kind in enumerate(copy_kinds(image.size, 5, offset=node)):
            scan, _ = scan_bytes(make_copy(image, kind, np.random.default_rng([node, k])), ScanLimits())
            copy_thumbs.append(decode_grey32(scan.grey32))
            source.append(node)
            kinds.append(kind)
            if have:
                vectors.append(unit[node])
    decision = decide(unit, thumbs, None, None, np.stack(vectors) if have else None, np.stack(copy_thumbs),
                      np.array(source), kinds, MAX_PHASH, MAX_DHASH, fixed_cosine=min_cosine)
    graph = build_graph(shas, scans, decision)
    return graph, {name: i for i, name in enumerate(names)}


def named_edges(graph: DuplicateGraph, at: dict[str, int]) -> dict[frozenset, dict]:
    name_of = {i: n for n, i in at.items()}
    return {frozenset((name_of[a], name_of[b])): ev for a, b, ev in graph.pairs()}


NAMES = ["a_png", "b", "a_bmp", "c", "a_small", "d", "a_mirror"]


def test_pixel_identical_contents_get_a_pixels_edge(family):
    graph, at = graph_of(family, NAMES)
    edges = named_edges(graph, at)
    pixel_edges = {pair for pair, ev in edges.items() if "pixels" in ev["kinds"]}
    assert pixel_edges == {frozenset(("a_png", "a_bmp"))}
    assert graph.components(["pixels"]) == [[at["a_png"], at["a_bmp"]]]


def test_copies_are_joined_and_unrelated_pictures_are_not(family):
    graph, at = graph_of(family, NAMES)
    edges = named_edges(graph, at)
    assert not any(pair & {"b", "c", "d"} for pair in edges)  # no edge touches the unrelated pictures
    small = edges[frozenset(("a_png", "a_small"))]
    assert "correlation" in small["kinds"] and small["correlation"] > 0.95
    mirror = edges[frozenset(("a_png", "a_mirror"))]
    assert mirror["mirrored"] is True and mirror["transform"] == "mirrored"
    groups = graph.components(["hash", "correlation", "embedding"])
    assert [sorted(g) for g in groups] == [sorted(at[n] for n in ("a_png", "a_bmp", "a_small", "a_mirror"))]


def test_a_users_min_cosine_is_a_raw_cosine_threshold(family, embeddings):
    # b–c have cosine 0.95 in the fake embeddings but are different pictures: at the user's 0.9 they join.
    names = ["a_png", "b", "c", "d", "a_small"]
    graph, at = graph_of(family, names, embeddings, min_cosine=0.9)
    edges = named_edges(graph, at)
    assert "embedding" in edges[frozenset(("b", "c"))]["kinds"]
    assert edges[frozenset(("b", "c"))]["cosine"] == pytest.approx(0.95, abs=1e-4)
    assert frozenset(("c", "d")) not in edges or "embedding" not in edges[frozenset(("c", "d"))]["kinds"]


def test_mirror_is_found_by_hash_only_under_the_mirror_variant(family):
    # The candidate search hashes every rotation and mirroring of each image: a mirror image matches its source
    # only as the mirrored variant (its direct hashes are far).
    from auditor.similarity import evidence as ev
    from auditor.similarity.pixels import decode_grey32

    thumbs = np.stack([decode_grey32(family[name].grey32) for name in ("a_png", "a_mirror", "b")])
    data = ev.make_dataset(None, thumbs)
    pairs = ev.search(data, None, thumbs, MAX_PHASH, MAX_DHASH, self_nodes=np.arange(3))
    matched = {(int(q), int(t)): int(v) for q, t, v, h in zip(pairs.query, pairs.target, pairs.variant, pairs.hash_match) if h}
    assert set(matched) == {(0, 1)}  # the mirror pair, once, and nothing with the unrelated picture
    assert matched[(0, 1)] == 4  # "mirrored"
    direct = np.unpackbits(data.phash[0] ^ data.phash[1]).sum()
    assert direct > MAX_PHASH  # so only the mirrored variant could have found it


def test_a_hash_match_needs_dhash_to_agree_too(family):
    from auditor.similarity import evidence as ev
    from auditor.similarity.pixels import decode_grey32

    thumbs = np.stack([decode_grey32(family[name].grey32) for name in ("a_png", "a_small")])
    data = ev.make_dataset(None, thumbs)
    pairs = ev.search(data, None, thumbs[:1], MAX_PHASH, MAX_DHASH)
    assert (pairs.target == 1).any() and pairs.hash_match[pairs.target == 1].all()
    far = data.dhash.copy()
    far[1] ^= 0xFF  # every dHash bit of a_small flipped: pHash still agrees, dHash does not
    pairs = ev.search(dataclasses.replace(data, dhash=far), None, thumbs[:1], MAX_PHASH, MAX_DHASH)
    assert not pairs.hash_match[pairs.target == 1].any()


def test_from_pairs_merges_kinds_and_keeps_the_lowest_sources_evidence():
    evidence = {3: {"kinds": ["embedding"], "cosine": 0.97}, 5: {"kinds": ["hash"], "phash_distance": 3}}
    graph = DuplicateGraph.from_pairs(
        ["x", "y", "z"], a=[2, 0, 0, 1], b=[0, 2, 2, 1],
        kinds=[KIND_BIT["hash"], KIND_BIT["embedding"], KIND_BIT["pixels"], KIND_BIT["hash"]],
        source=[5, 3, NO_SOURCE, 7], evidence_of=lambda ks: [dict(evidence[k]) for k in ks])
    assert len(graph) == 1  # one node pair; the self-pair (1, 1) is no edge
    assert list(graph.pairs()) == [(0, 2, {"kinds": ["pixels", "embedding", "hash"], "cosine": 0.97})]


def test_edges_are_sorted_and_each_nodes_evidence_is_read_from_its_own_edges():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 40, 300), rng.integers(0, 40, 300)
    graph = DuplicateGraph.from_pairs([str(i) for i in range(40)], a, b, np.full(300, KIND_BIT["embedding"]),
                                      source=np.arange(300), evidence_of=lambda ks: [{"k": k} for k in ks])
    keys = list(zip(graph.a.tolist(), graph.b.tolist()))
    assert keys == sorted({(min(x, y), max(x, y)) for x, y in zip(a.tolist(), b.tolist()) if x != y})
    nodes = [3, 17, 5, 29, 11]
    expected = [(x, y) for x, y in keys if x in nodes and y in nodes]
    within = graph.evidence_within(nodes)
    assert expected and [(x, y) for x, y, _ in within] == expected
    first: dict = {}
    for k, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
        first.setdefault((min(x, y), max(x, y)), k)
    assert all(ev["k"] == first[(x, y)] for x, y, ev in within)  # the lowest source's evidence


def test_groups_read_together_have_each_groups_own_edges_and_evidence():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 60, 900), rng.integers(0, 60, 900)
    calls = []

    def evidence_of(ks):
        calls.append(len(ks))
        return [{"k": k} for k in ks]

    graph = DuplicateGraph.from_pairs([str(i) for i in range(60)], a, b, np.full(900, KIND_BIT["embedding"]),
                                      source=np.arange(900), evidence_of=evidence_of)
    # Disjoint groups (unsorted, one repeated node), a group of one, an empty one, and two that share nodes
    # with earlier groups (read alone).
    groups = [[7, 3, 12, 3], [40, 41, 42, 43, 44], [9], [], [12, 50, 51], [20, 21, 22], [22, 7]]
    expected = [graph.evidence_within(g) for g in groups]
    calls.clear()
    together = graph.evidence_within_groups(groups)
    assert together == expected and sum(map(len, expected)) >= 8
    assert calls[0] == sum(len(e) for g, e in zip(groups, expected) if g not in ([12, 50, 51], [22, 7]))
    assert DuplicateGraph(["x", "y"]).evidence_within_groups([[0, 1]]) == [[]]  # a graph with no edges


def test_components_of_exact_kinds_are_connected_components():
    graph = DuplicateGraph.from_pairs(list("ABCDEF"), [0, 1, 3, 4], [1, 2, 4, 5],
                                      [KIND_BIT["pixels"], KIND_BIT["pixels"], KIND_BIT["embedding"], KIND_BIT["pixels"]])
    assert sorted(graph.components(["pixels"])) == [[0, 1, 2], [4, 5]]
    assert sorted(graph.components(["pixels", "embedding"])) == [[0, 1, 2], [3, 4, 5]]


def test_single_image_graph_is_empty(family):
    graph, _ = graph_of(family, ["a_png"])
    assert len(graph) == 0 and graph.components(["hash", "pixels"]) == []


def test_accepted_pairs_outside_the_groups_are_the_chained_ones():
    # A≈B, B≈C, A≉C: the group is {A, B} (or {B, C}); the other accepted pair chains, and is listed. Identical
    # pixels (D, E) are never chained; an unrelated pair in a group of its own (F, G) neither.
    graph = DuplicateGraph.from_pairs(list("ABCDEFG"), [0, 1, 3, 5], [1, 2, 4, 6],
                                      [KIND_BIT["embedding"], KIND_BIT["correlation"], KIND_BIT["pixels"],
                                       KIND_BIT["embedding"]])
    graph.near_groups = [[0, 1], [3, 4], [5, 6]]
    assert graph.chained_edges().tolist() == [[1, 2]]
    graph.near_groups = None  # before the groups are formed nothing can be called chained
    assert graph.chained_edges().tolist() == []


def test_chained_pairs_on_both_tiers_need_the_embedding_and_a_pixel_or_hash_tier():
    # Groups {A, B}, {D, E}; chained: B–C (embedding and correlation), A–F (embedding and hash), D–G (correlation and
    # hash: no embedding), E–H (embedding only).
    E, C, H = KIND_BIT["embedding"], KIND_BIT["correlation"], KIND_BIT["hash"]
    graph = DuplicateGraph.from_pairs(list("ABCDEFGH"), [0, 1, 0, 3, 3, 4], [1, 2, 5, 4, 6, 7],
                                      [E, E | C, E | H, E, C | H, E])
    graph.near_groups = [[0, 1], [3, 4]]
    assert graph.chained_edges().tolist() == [[0, 5], [1, 2], [3, 6], [4, 7]]
    assert graph.chained_edges(both_tiers=True).tolist() == [[0, 5], [1, 2]]


@pytest.mark.parametrize("min_cosine", [None, 0.9])
def test_each_edges_kinds_are_its_pairs_kinds_judged_one_pair_at_a_time(family, embeddings, min_cosine):
    # The graph packs kinds into bits from masks computed for all pairs at once (DuplicateDecision.kind_masks);
    # they must name what the rule says of each pair on its own (the reference below, written independently).
    graph, _ = graph_of(family, NAMES[:6] if min_cosine else NAMES, embeddings if min_cosine else None,
                        min_cosine=min_cosine)
    decision = graph.evidence_of.__self__
    checked = 0
    for edge, (_a, _b, evidence) in enumerate(graph.pairs()):
        if graph.source[edge] == NO_SOURCE:
            continue
        checked += 1
        own = [kind for kind in evidence["kinds"] if kind != "pixels"]
        assert own == per_pair_evidence(decision, int(graph.source[edge]))["kinds"]
    assert checked >= 1


def per_pair_evidence(decision, k: int) -> dict:
    """The report's evidence of one candidate pair as it was first written, one pair at a time (the reference)."""
    from auditor.similarity.engine import VARIANT_NAMES

    p, rule = decision.pairs, decision.rule
    single = p.subset(np.arange(len(p)) == k)
    kinds = []
    if rule.embedding_passes(single)[0]:
        kinds.append("embedding")
    if rule.pixel_passes(single)[0]:
        kinds.append("correlation")
    if not kinds and rule.joint_passes(single)[0]:
        kinds.append("joint")
    if p.hash_match[k] and (rule.hash_alone or kinds):
        kinds.append("hash")
    out = {"kinds": kinds, "correlation": round(float(p.correlation[k]), 4),
           "transform": VARIANT_NAMES[int(p.variant[k])], "mirrored": bool(int(p.variant[k]) >= 4)}
    if decision.data.unit is not None:
        out["cosine"] = round(float(p.cosine[k]), 4)
        out["scaled_cosine"] = round(float(p.scaled[k]), 4)
    if p.hash_match[k]:
        out["phash_distance"] = int(p.phash_distance[k])
        out["dhash_distance"] = int(p.dhash_distance[k])
    return out


@pytest.mark.parametrize("min_cosine", [None, 0.9])
def test_pairs_evidence_read_together_is_each_pairs_own(family, embeddings, min_cosine):
    graph, _ = graph_of(family, NAMES[:6] if min_cosine else NAMES, embeddings if min_cosine else None,
                        min_cosine=min_cosine)
    decision = graph.evidence_of.__self__
    every = list(range(len(decision.pairs)))
    assert len(every) >= 3
    together = decision.edges_evidence(every)
    assert together == [per_pair_evidence(decision, k) for k in every]
    assert [decision.edges_evidence([k])[0] for k in reversed(every)] == together[::-1]


@pytest.mark.parametrize("min_cosine", [None, 0.88])
def test_the_decision_an_audit_keeps_gives_the_whole_decisions_graph_groups_and_evidence(family, embeddings,
                                                                                         min_cosine):
    """An audit keeps only the accepted pairs (`accepted_only`): the rejected candidates lived through every later
    check. At 0.88 the embeddings chain b≈c≈d with b≉d, so splitting the chain judges a pair that was no candidate
    and weighs the accepted pairs' strength: on the kept decision too."""
    names = ["a_png", "b", "c", "d", "a_small"] if min_cosine else NAMES  # every one embedded, or no embeddings
    graph, _ = graph_of(family, names, embeddings if min_cosine else None, min_cosine=min_cosine)
    whole = graph.evidence_of.__self__
    kept = whole.accepted_only()
    assert (~whole.accepted).any()  # there were rejected candidates to drop
    assert len(kept.pairs) == int(whole.accepted.sum()) and kept.accepted.all() and kept.data.neighbours is None
    again = build_graph(graph.shas, {s.sha256: s for s in family.values()}, kept)
    for field in ("a", "b", "kinds"):
        np.testing.assert_array_equal(getattr(again, field), getattr(graph, field))
    assert again.near_groups == graph.near_groups and kept.groups == whole.groups
    assert list(again.pairs()) == list(graph.pairs())
    assert kept.rule == whole.rule and kept.leak is whole.leak and kept.hash_tier is whole.hash_tier
    # The choice as reported, without the calibrator that holds every candidate pair.
    assert kept.choice.calibrator is None and whole.choice.calibrator is not None
    assert dataclasses.replace(kept.choice, calibrator=whole.choice.calibrator) == whole.choice
    if min_cosine:
        assert graph.split.components >= 1 and graph.split.judged_pairs >= 1  # a chain split by judging b, d
