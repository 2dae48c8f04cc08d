"""Unit tests for auditor/duplicate_graph.py, on scans of real small images and fake embeddings."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from auditor.similarity.duplicate_graph import DuplicateGraph, build_graph, hash_distance_pairs
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
    shas = [family[n].sha256 for n in names]
    scans = {s.sha256: s for s in family.values()}
    graph = build_graph(shas, scans, embeddings, MAX_PHASH, MAX_DHASH, min_cosine)
    return graph, {name: i for i, name in enumerate(names)}


def named_edges(graph: DuplicateGraph, at: dict[str, int]) -> dict[frozenset, dict]:
    name_of = {i: n for n, i in at.items()}
    return {frozenset((name_of[a], name_of[b])): ev for (a, b), ev in graph.edges.items()}


NAMES = ["a_png", "b", "a_bmp", "c", "a_small", "d", "a_mirror"]


def test_pixel_identical_contents_get_a_pixels_edge(family):
    graph, at = graph_of(family, NAMES)
    edges = named_edges(graph, at)
    pixel_edges = {pair for pair, ev in edges.items() if "pixels" in ev["kinds"]}
    assert pixel_edges == {frozenset(("a_png", "a_bmp"))}
    assert graph.components(["pixels"]) == [[at["a_png"], at["a_bmp"]]]


def test_hash_edges_join_resized_and_mirrored_copies_only(family):
    graph, at = graph_of(family, NAMES)
    edges = named_edges(graph, at)
    small = edges[frozenset(("a_png", "a_small"))]
    assert "hash" in small["kinds"] and small["mirrored"] is False
    assert small["phash_distance"] <= MAX_PHASH and small["dhash_distance"] <= MAX_DHASH
    mirror = edges[frozenset(("a_png", "a_mirror"))]
    assert mirror["kinds"] == ["hash"] and mirror["mirrored"] is True
    assert (mirror["phash_distance"], mirror["dhash_distance"]) == (0, 0)
    identical = edges[frozenset(("a_png", "a_bmp"))]
    assert set(identical["kinds"]) == {"pixels", "hash"} and identical["phash_distance"] == 0
    # No edge touches the unrelated pictures.
    assert not any(pair & {"b", "c", "d"} for pair in edges)
    groups = graph.components(["hash"])
    assert [sorted(g) for g in groups] == [sorted(at[n] for n in ("a_png", "a_bmp", "a_small", "a_mirror"))]


def test_mirror_is_found_only_through_the_mirror_hashes(family):
    a, mirror = family["a_png"], family["a_mirror"]
    direct_only = [dataclasses.replace(s, phash_mirror="0" * 16, dhash_mirror="0" * 16) for s in (a, mirror)]
    assert hash_distance_pairs([a, mirror], MAX_PHASH, MAX_DHASH) == {
        (0, 1): {"phash_distance": 0, "dhash_distance": 0, "mirrored": True}
    }
    assert hash_distance_pairs(direct_only, MAX_PHASH, MAX_DHASH) == {}


def test_hash_edge_needs_dhash_to_agree_too(family):
    a, small = family["a_png"], family["a_small"]
    far_dhash = f"{int(small.dhash, 16) ^ 0xFFFF_FFFF_0000_0000:016x}"  # 32 bits away
    disagreeing = dataclasses.replace(small, dhash=far_dhash, phash_mirror="0" * 16, dhash_mirror="0" * 16)
    assert hash_distance_pairs([a, small], MAX_PHASH, MAX_DHASH)
    assert hash_distance_pairs([a, disagreeing], MAX_PHASH, MAX_DHASH) == {}


def test_hash_thresholds_are_inclusive_of_the_measured_distance(family):
    a, small = family["a_png"], family["a_small"]
    found = hash_distance_pairs([a, small], MAX_PHASH, MAX_DHASH)[(0, 1)]
    p, d = found["phash_distance"], found["dhash_distance"]
    assert hash_distance_pairs([a, small], p, d)
    if p > 0:
        assert hash_distance_pairs([a, small], p - 1, MAX_DHASH) == {}


def test_embedding_edges_above_min_cosine_only(family, embeddings):
    graph, at = graph_of(family, NAMES, embeddings, min_cosine=0.9)
    edges = named_edges(graph, at)
    embedding_edges = {pair: ev for pair, ev in edges.items() if "embedding" in ev["kinds"]}
    assert set(embedding_edges) == {frozenset(("b", "c"))}  # 0.95 ≥ 0.9; c–d 0.89 and b–d 0.7 are below
    assert embedding_edges[frozenset(("b", "c"))]["cosine"] == pytest.approx(0.95, abs=1e-4)
    assert graph.components(["embedding"]) == [sorted([at["b"], at["c"]])]

    lower, at = graph_of(family, NAMES, embeddings, min_cosine=0.85)
    pairs = {pair for pair, ev in named_edges(lower, at).items() if "embedding" in ev["kinds"]}
    assert pairs == {frozenset(("b", "c")), frozenset(("c", "d"))}
    assert [sorted(g) for g in lower.components(["embedding"])] == [sorted([at["b"], at["c"], at["d"]])]


def test_hash_edges_carry_cosine_when_both_ends_are_embedded(family, embeddings):
    graph, at = graph_of(family, NAMES, embeddings, min_cosine=0.9)
    edges = named_edges(graph, at)
    small = edges[frozenset(("a_png", "a_small"))]
    assert small["kinds"] == ["hash"]  # 0.6 is below min_cosine: no embedding edge …
    assert small["cosine"] == pytest.approx(0.6, abs=1e-4)  # … but the evidence shows it
    assert "cosine" not in edges[frozenset(("a_png", "a_mirror"))]  # a_mirror has no vector


def test_no_embedding_edges_without_threshold_or_vectors(family, embeddings):
    for graph, _ in (graph_of(family, NAMES, embeddings, None), graph_of(family, NAMES, None, 0.5)):
        assert all("embedding" not in ev["kinds"] and "cosine" not in ev for ev in graph.edges.values())
        assert graph.components(["embedding"]) == []


def test_components_combine_chosen_kinds(family, embeddings):
    graph, at = graph_of(family, NAMES, embeddings, min_cosine=0.9)
    groups = sorted(sorted(g) for g in graph.components(["hash", "embedding"]))
    assert groups == sorted(
        [sorted(at[n] for n in ("a_png", "a_bmp", "a_small", "a_mirror")), sorted([at["b"], at["c"]])]
    )
    assert graph.components([]) == []
    assert graph.components(["no-such-kind"]) == []


def test_evidence_within_a_group(family, embeddings):
    graph, at = graph_of(family, NAMES, embeddings, min_cosine=0.9)
    within = graph.evidence_within([at["a_png"], at["a_bmp"], at["b"]])
    assert [(a, b) for a, b, _ in within] == [tuple(sorted((at["a_png"], at["a_bmp"])))]
    assert set(within[0][2]["kinds"]) == {"pixels", "hash"}
    group = [at[n] for n in ("a_png", "a_bmp", "a_small", "a_mirror")]
    all_within = graph.evidence_within(group)
    assert [(a, b) for a, b, _ in all_within] == sorted((a, b) for a, b, _ in all_within)
    assert all(a in group and b in group for a, b, _ in all_within)
    assert len(all_within) == 6  # every pair of the four copies is linked by some evidence
    assert graph.evidence_within([at["b"], at["d"]]) == []


def test_add_merges_kinds_and_keeps_first_evidence():
    graph = DuplicateGraph(shas=["x", "y", "z"])
    graph.add(2, 0, "hash", phash_distance=3)
    graph.add(0, 2, "embedding", cosine=0.97, phash_distance=99)
    graph.add(0, 2, "hash")
    assert graph.edges == {(0, 2): {"kinds": ["hash", "embedding"], "phash_distance": 3, "cosine": 0.97}}


def test_single_image_graph_is_empty(family):
    graph, _ = graph_of(family, ["a_png"])
    assert graph.edges == {} and graph.components(["hash", "pixels"]) == []


def test_embedding_edges_carry_rank_and_margin(family, embeddings):
    # b's nearest neighbour is c (0.95) and c's is b: mutual, with b's margin over its next (d, 0.7) = 0.25.
    graph, at = graph_of(family, ["b", "c", "d", "a_png"], embeddings, min_cosine=0.9)
    edge = named_edges(graph, at)[frozenset(("b", "c"))]
    assert edge["mutual_nearest"] is True
    assert edge["margin_over_next"] == pytest.approx(0.25, abs=1e-3)
    # c–d (0.89) would be an edge at a lower threshold, but d is not c's nearest neighbour.
    graph, at = graph_of(family, ["b", "c", "d", "a_png"], embeddings, min_cosine=0.85)
    assert named_edges(graph, at)[frozenset(("c", "d"))]["mutual_nearest"] is False
