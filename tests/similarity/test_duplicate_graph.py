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
    return {frozenset((name_of[a], name_of[b])): ev for (a, b), ev in graph.edges.items()}


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


def test_add_merges_kinds_and_keeps_first_evidence():
    graph = DuplicateGraph(shas=["x", "y", "z"])
    graph.add(2, 0, "hash", phash_distance=3)
    graph.add(0, 2, "embedding", cosine=0.97, phash_distance=99)
    graph.add(0, 2, "hash")
    assert graph.edges == {(0, 2): {"kinds": ["hash", "embedding"], "phash_distance": 3, "cosine": 0.97}}


def test_single_image_graph_is_empty(family):
    graph, _ = graph_of(family, ["a_png"])
    assert graph.edges == {} and graph.components(["hash", "pixels"]) == []


def test_accepted_pairs_outside_the_groups_are_the_chained_ones():
    # A≈B, B≈C, A≉C: the group is {A, B} (or {B, C}); the other accepted pair chains, and is listed. Identical
    # pixels (D, E) are never chained; an unrelated pair in a group of its own (F, G) neither.
    graph = DuplicateGraph(shas=list("ABCDEFG"))
    graph.add(0, 1, "embedding")
    graph.add(1, 2, "correlation")
    graph.add(3, 4, "pixels")
    graph.add(5, 6, "embedding")
    graph.near_groups = [[0, 1], [3, 4], [5, 6]]
    assert graph.chained_edges() == [(1, 2)]
    graph.near_groups = None  # before the groups are formed nothing can be called chained
    assert graph.chained_edges() == []
