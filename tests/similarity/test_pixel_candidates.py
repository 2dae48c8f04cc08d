"""Pixel-likeness candidates (evidence.search): on small images a rotated, re-cropped copy that the embedding
does not rank near its source is still found, under the rotation that matches best; on full-size images the
search stays the embedding's (plus hashes): there the extra look-alike pairs cost precision (evidence.py)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from auditor.encoding.imaging import ScanLimits, scan_bytes
from auditor.similarity import evidence as ev
from auditor.similarity import pixels as px
from auditor.similarity.input_size import SMALL_SIDE, are_small
from auditor.similarity.pixels import decode_grey32


def picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((128, 96), Image.Resampling.BICUBIC)


def tiny_grey32(image: Image.Image) -> np.ndarray:
    """The image as a 32 px JPEG file, scanned like any dataset file: its grey thumbnail."""
    buffer = io.BytesIO()
    scale = 32 / max(image.size)
    small = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)),
                                        Image.Resampling.LANCZOS)
    small.save(buffer, "JPEG", quality=75)
    scan, _ = scan_bytes(buffer.getvalue(), ScanLimits(min_side=8))
    return decode_grey32(scan.grey32)


def rotated_copy_search(small_images: bool) -> tuple[ev.Pairs, int]:
    originals = [picture(seed) for seed in range(60)]
    thumbs = np.stack([tiny_grey32(im) for im in originals])
    source = 17
    copy = originals[source].crop((6, 4, 122, 92)).rotate(90, expand=True)  # re-cropped, turned a quarter
    copy_thumbs = tiny_grey32(copy)[None]
    # Fake embeddings (search logic only): the copy's points away from its source, so the embedding search
    # never proposes the source; hash thresholds of 0 keep the hash tier out of it too.
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(60, 16)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    data = ev.make_dataset(unit, thumbs, small_images=small_images)
    pairs = ev.search(data, -unit[[source]], copy_thumbs, max_phash=0, max_dhash=0)
    return pairs, source


def test_a_rotated_copy_of_a_tiny_image_is_found_by_pixel_likeness():
    pairs, source = rotated_copy_search(small_images=True)
    found = np.flatnonzero(pairs.target == source)
    assert len(found) == 1
    k = found[0]
    assert pairs.rank[k] == -1 and not pairs.hash_match[k]  # neither the embedding nor a hash found it
    assert pairs.variant[k] not in (0, 4)  # matched under a rotation
    assert pairs.correlation[k] >= 0.9


def test_full_size_images_get_no_pixel_candidates():
    pairs, source = rotated_copy_search(small_images=False)
    assert source not in set(pairs.target.tolist())
    assert set(pairs.rank.tolist()) <= set(range(ev.CANDIDATES))  # embedding neighbours only


def test_without_embeddings_pixel_likeness_is_the_search():
    originals = [picture(seed) for seed in range(30)]
    thumbs = np.stack([tiny_grey32(im) for im in originals])
    data = ev.make_dataset(None, thumbs)
    copy = tiny_grey32(originals[5].crop((6, 4, 122, 92)).rotate(270, expand=True))[None]
    pairs = ev.search(data, None, copy, max_phash=0, max_dhash=0)
    k = np.flatnonzero(pairs.target == 5)
    assert len(k) == 1 and pairs.correlation[k[0]] >= 0.9


def test_small_means_a_typical_longer_side_of_at_most_small_side():
    assert are_small([32] * 10 + [500] * 3)
    assert are_small([SMALL_SIDE] * 5)
    assert not are_small([SMALL_SIDE + 1] * 5)
    assert not are_small([32] * 3 + [500] * 10)
    assert not are_small([])


def cropped_copy_among_look_alikes() -> tuple[np.ndarray, np.ndarray, int]:
    """60 tiny pictures; the top-left 85 % of picture 17 as a copy; and four noisy versions of that copy, whose
    8×8 block means are closer to the copy's (0.95) than its source's whole frame is (0.64)."""
    originals = [picture(seed) for seed in range(60)]
    copy = tiny_grey32(originals[17].crop((0, 0, 109, 82)).resize((128, 96)))
    rng = np.random.default_rng(1)
    look_alikes = [np.clip(copy + rng.normal(0, 45, copy.shape), 0, 255).astype(np.uint8) for _ in range(4)]
    return np.concatenate([np.stack([tiny_grey32(im) for im in originals]), np.stack(look_alikes)]), copy, 17


def test_a_cropped_copy_is_found_through_its_source_s_crops_despite_closer_look_alikes():
    thumbs, copy, source = cropped_copy_among_look_alikes()
    query = px.block_descriptors(copy[None])
    assert (px.block_descriptors(thumbs[[source]]) @ query[0])[0] < 0.7  # the whole frame ranks below the four
    data = ev.make_dataset(None, thumbs, small_images=True)
    sims, labels = ev.pixel_neighbours(data, query, 4)
    assert labels[0, 0] == source and sims[0, 0] >= 0.99  # through its top-left crop
    assert len(set(labels[0].tolist())) == 4  # distinct images, each by its best row
    # Without crops (the search under rotations) the source is as near as its whole frame: behind the look-alikes.
    sims, labels = ev.pixel_neighbours(data, query, 4, crops=False)
    assert source not in labels[0] and sims[0, 0] >= 0.9
    # In the search (fake embeddings pointing away, hashes off): a pixel candidate that aligns as a copy.
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(len(thumbs), 16)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    pairs = ev.search(ev.make_dataset(unit, thumbs, small_images=True), -unit[[source]], copy[None],
                      max_phash=0, max_dhash=0)
    k = np.flatnonzero(pairs.target == source)
    assert len(k) == 1 and pairs.rank[k[0]] == -1 and pairs.correlation[k[0]] >= 0.95


def test_the_exact_pixel_search_is_each_image_s_best_row_ranked():
    rng = np.random.default_rng(2)
    descriptors = rng.normal(size=(50, px.DESCRIPTORS_PER_IMAGE, 64)).astype(np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=2, keepdims=True)
    queries = rng.normal(size=(7, 64)).astype(np.float32)
    sims, labels = ev._exact_pixel_search(descriptors.reshape(50, -1), queries, 5)
    best = np.einsum("qd,ncd->qnc", queries, descriptors).max(axis=2)
    expected = np.argsort(-best, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_allclose(sims, np.take_along_axis(best, expected, axis=1), rtol=1e-5)
    sims, labels = ev._exact_pixel_search(descriptors[:3].reshape(3, -1), queries, 5)  # fewer images than k
    assert (labels[:, 3:] == -1).all() and np.isinf(sims[:, 3:]).all() and (labels[:, :3] >= 0).all()


def test_nearest_distinct_keeps_each_owner_s_first_and_best_row():
    sims = np.array([[0.9, 0.8, 0.7, 0.6, 0.5], [0.9, 0.8, 0.7, 0.6, 0.5]], dtype=np.float32)
    owners = np.array([[3, 3, 1, 3, 2], [1, -1, -1, -1, -1]])
    out_sims, out_owners = ev.nearest_distinct(sims, owners, 3)
    np.testing.assert_array_equal(out_owners, [[3, 1, 2], [1, -1, -1]])
    np.testing.assert_allclose(out_sims, [[0.9, 0.7, 0.5], [0.9, -np.inf, -np.inf]])


def test_nearest_distinct_matches_a_row_by_row_reading_when_rows_hold_more_owners_than_k():
    rng = np.random.default_rng(3)
    owners = rng.integers(-1, 9, size=(200, 24))
    sims = -np.sort(-rng.random((200, 24)).astype(np.float32), axis=1)
    out_sims, out_owners = ev.nearest_distinct(sims, owners, 5)
    for row in range(len(owners)):
        seen = {}
        for sim, owner in zip(sims[row], owners[row]):
            if owner >= 0 and owner not in seen and len(seen) < 5:
                seen[owner] = sim
        expected = list(seen) + [-1] * (5 - len(seen))
        np.testing.assert_array_equal(out_owners[row], expected)
        np.testing.assert_allclose(out_sims[row], list(seen.values()) + [-np.inf] * (5 - len(seen)))


def test_above_the_exact_limit_an_ivf_index_finds_the_copy_and_measures_its_recall(monkeypatch):
    monkeypatch.setattr(ev, "EXACT_PIXEL_SEARCH", 30)
    thumbs, copy, source = cropped_copy_among_look_alikes()
    data = ev.make_dataset(None, thumbs, small_images=True)
    assert data.descriptors is None  # rows go straight into the index
    query = px.block_descriptors(copy[None])
    sims, labels = ev.pixel_neighbours(data, query, 4)
    assert labels[0, 0] == source and sims[0, 0] >= 0.98  # 8-bit rows: close, not exact
    _sims, labels = ev.pixel_neighbours(data, query, 4, crops=False)  # a second index, of whole frames
    assert source not in labels[0] and data.plain_pixel_index.ntotal == len(thumbs)
    # Every cell searched: the approximate neighbours are the exact ones, as the quality record measures.
    data.pixel_index.nprobe = data.pixel_index.nlist
    own = px.block_descriptors(thumbs)
    own_sims, found = ev.pixel_neighbours(data, own, 4)
    record = ev.pixel_search_quality(data, own, found, np.arange(len(thumbs)))
    assert record.kind == "pixel_knn" and not record.exact and record.queries_measured == len(thumbs)
    assert record.recall >= 0.95 and record.to_dict()["k"] == 3
    data.plain_pixel_index.nprobe = data.plain_pixel_index.nlist
    _sims, found_whole = ev.pixel_neighbours(data, own, 2, crops=False)
    whole = ev.pixel_search_quality(data, own, found_whole, np.arange(len(thumbs)), crops=False)
    assert whole.recall >= 0.95 and whole.to_dict()["k"] == 1 and whole.parameters["rows_per_image"] == 1
    # A search that found nothing measures as such.
    nothing = ev.pixel_search_quality(data, own, np.full_like(found, -1), np.arange(len(thumbs)))
    assert nothing.recall == 0.0
    # Queries searched a block at a time find what one search of them all finds.
    monkeypatch.setattr(ev, "PIXEL_SEARCH_BLOCK", 7)  # several blocks, the last one short
    blocked_sims, blocked = ev.pixel_neighbours(data, own, 4)
    np.testing.assert_array_equal(blocked, found)
    np.testing.assert_array_equal(blocked_sims, own_sims)
    # … and so does a search whose query descriptors are made a block at a time, under a dihedral variant.
    for variant in (0, 5):
        whole = px.block_descriptors(np.ascontiguousarray(px.dihedral(thumbs, variant)))
        lazy = ev.TurnedDescriptors(thumbs, variant)
        assert len(lazy) == len(thumbs)
        np.testing.assert_array_equal(lazy[3:11], whole[3:11])
        np.testing.assert_array_equal(lazy[np.array([0, 7, 2])], whole[[0, 7, 2]])
        for crops in (True, False):
            expected = ev.pixel_neighbours(data, whole, 4, crops=crops)
            for got, want in zip(ev.pixel_neighbours(data, lazy, 4, crops=crops), expected):
                np.testing.assert_array_equal(got, want)
        found_lazy = ev.pixel_neighbours(data, lazy, 4)[1]
        assert ev.pixel_search_quality(data, lazy, found_lazy, np.arange(len(thumbs))).recall == \
            ev.pixel_search_quality(data, whole, found_lazy, np.arange(len(thumbs))).recall


def test_the_last_pixel_search_drops_the_indexes_and_finds_what_a_search_keeping_them_finds(monkeypatch):
    monkeypatch.setattr(ev, "EXACT_PIXEL_SEARCH", 30)
    thumbs, copy, _source = cropped_copy_among_look_alikes()
    kept = ev.make_dataset(None, thumbs, small_images=True)
    first = ev.search(kept, None, thumbs, max_phash=6, max_dhash=10, self_nodes=np.arange(len(thumbs)))
    assert kept.pixel_index is not None and kept.plain_pixel_index is not None  # kept for a later search
    dropped = ev.make_dataset(None, thumbs, small_images=True)
    last = ev.search(dropped, None, thumbs, max_phash=6, max_dhash=10, self_nodes=np.arange(len(thumbs)),
                     last_pixel_search=True)
    assert dropped.pixel_index is None and dropped.plain_pixel_index is None
    for name in ("query", "target", "correlation", "variant", "phash_distance"):
        np.testing.assert_array_equal(getattr(first, name), getattr(last, name))
    # A later search of the same dataset builds what it needs again (nothing is left half-dropped).
    assert len(ev.search(dropped, None, copy[None], max_phash=6, max_dhash=10).query)
