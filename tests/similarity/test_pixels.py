"""Pixel-tier primitives on real (small, generated) images: hashes equal imagehash's, rotated copies hash
close under the matching variant, aligned correlation separates copies from other pictures."""

from __future__ import annotations

import threading

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageOps

from auditor.similarity.neighbours import hex_to_codes
from auditor.similarity import pixels as px


def scene(seed: int, side: int = 32) -> np.ndarray:
    """A smooth random grey picture (asymmetric, so its rotations differ from it)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (5, 7), dtype=np.uint8))
    return np.asarray(coarse.resize((side, side), Image.Resampling.BICUBIC))


def test_phash_and_dhash_equal_imagehash_on_32px_grey():
    thumbs = np.stack([scene(s) for s in range(6)])
    images = [Image.fromarray(t) for t in thumbs]
    assert (px.phash_codes(thumbs) == hex_to_codes([str(imagehash.phash(i)) for i in images])).all()
    assert (px.dhash_codes(thumbs) == hex_to_codes([str(imagehash.dhash(i)) for i in images])).all()


def test_phash_codes_in_blocks_equal_imagehash(monkeypatch):
    monkeypatch.setattr(px, "PHASH_BLOCK", 4)  # 11 thumbnails: two full blocks and a short one
    thumbs = np.stack([scene(s) for s in range(11)])
    expected = hex_to_codes([str(imagehash.phash(Image.fromarray(t))) for t in thumbs])
    assert (px.phash_codes(thumbs) == expected).all()
    assert px.phash_codes(thumbs[:0]).shape == (0, 8)


def test_grey32_round_trips():
    thumb = scene(3)
    assert (px.decode_grey32(px.encode_grey32(thumb)) == thumb).all()
    assert px.decode_grey32(None) is None and px.decode_grey32(px.encode_grey32(thumb[:4])) is None


def test_every_rotation_and_mirror_is_matched_by_its_dihedral_variant():
    original = scene(1)[None]
    codes = px.phash_codes(original)
    for variant in range(1, 8):
        turns, mirrored = px.DIHEDRAL[variant]
        copy = np.rot90(np.flip(original, 2) if mirrored else original, k=turns, axes=(1, 2))
        assert px.hamming(px.phash_codes(copy), codes)[0] > 4  # the copy itself hashes far …
        # … but some variant of the copy brings it back (the inverse transform)
        best = min(px.hamming(px.phash_codes(np.ascontiguousarray(px.dihedral(copy, v))), codes)[0] for v in range(8))
        assert best == 0


def test_aligned_correlation_finds_shifted_zoomed_recoloured_copies():
    base = np.stack([scene(s, 64) for s in range(10)])
    thumbs = np.stack([np.asarray(Image.fromarray(b).resize((32, 32), Image.Resampling.LANCZOS)) for b in base])
    # Copies: crop 12 % at an offset, back to 32 px, contrast and brightness changed.
    copies = []
    for b in base:
        crop = Image.fromarray(b).crop((3, 5, 59, 61)).resize((32, 32), Image.Resampling.BICUBIC)
        copies.append(np.clip(np.asarray(crop, dtype=np.float32) * 0.8 + 30, 0, 255).astype(np.uint8))
    copies = np.stack(copies)
    same = px.aligned_correlation(copies, thumbs)
    other = px.aligned_correlation(copies, np.roll(thumbs, 1, axis=0))
    assert same.min() > 0.9
    assert other.max() < same.min()
    assert px.aligned_correlation(thumbs, thumbs) == pytest_approx_ones(len(thumbs))


def pytest_approx_ones(n: int):
    import pytest

    return pytest.approx(np.ones(n), abs=1e-4)


def test_aligned_correlation_of_a_mirror_needs_the_mirror_variant():
    thumb = scene(5)[None]
    mirror = np.ascontiguousarray(ImageOps.mirror(Image.fromarray(thumb[0])))[None]
    assert px.aligned_correlation(mirror, thumb)[0] < 0.8
    assert px.aligned_correlation(np.ascontiguousarray(px.dihedral(mirror, 4)), thumb)[0] > 0.99


def test_lanczos_9x8_is_pillows_resize_bit_for_bit():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (300, 32, 32), dtype=np.uint8)  # sharp edges: overshoot clipped at 0 and 255
    smooth = np.stack([scene(s) for s in range(20)])
    flat = np.stack([np.zeros((32, 32), np.uint8), np.full((32, 32), 255, np.uint8)])
    thumbs = np.concatenate([noise, smooth, flat])
    pillow = np.stack([np.asarray(Image.fromarray(t).resize((9, 8), Image.Resampling.LANCZOS)) for t in thumbs])
    assert np.array_equal(px.lanczos_9x8(thumbs), pillow)
    assert px.dhash_codes(thumbs[:0]).shape == (0, 8)


def test_variant_correlations_equal_one_screened_correlation_per_variant():
    base = np.stack([scene(s) for s in range(12)])
    rng = np.random.default_rng(1)
    a = np.concatenate([base, base[:4], np.clip(base[:6].astype(int) + rng.integers(-8, 9, (6, 32, 32)), 0, 255)])
    a = np.ascontiguousarray(np.concatenate([a, px.dihedral(base[:3], 1)])).astype(np.uint8)
    b = np.concatenate([np.roll(base, 1, axis=0), base[:4], base[:6], base[:3]]).astype(np.uint8)
    wanted = rng.random((len(a), 8)) < 0.5
    wanted[:, 0] = True
    wanted[-3:] = True  # the rotated copies: every variant, one of which undoes the rotation
    got = px.variant_correlations(a, b, wanted)
    for v in range(8):
        rows = np.flatnonzero(wanted[:, v])
        want = px.screened_correlation(np.ascontiguousarray(px.dihedral(a[rows], v)), b[rows])
        np.testing.assert_allclose(got[rows, v], want, rtol=0, atol=TOLERANCE)
        assert np.isnan(got[~wanted[:, v], v]).all()
    assert got[-3:].max(axis=1).min() > 0.99
    assert (got[12:16, 0] > 0.99).all()


def test_distinct_thumbnails_reconstruct_their_input():
    thumbs = np.stack([scene(s) for s in (0, 1, 0, 2, 1)])
    inverse, unique = px.distinct_thumbnails(thumbs)
    assert len(unique) == 3 and np.array_equal(unique[inverse], thumbs)


def test_evaluations_sharing_an_image_share_its_features_whatever_their_order(monkeypatch):
    # Evaluations of three images interleaved (a0, a1, a2, a0, …): blocks follow the first image and variant,
    # so each image's features are prepared in one block, not once per evaluation; the numbers do not change.
    images = np.stack([scene(s) for s in range(6)])
    a_id = np.tile(np.arange(3), 8)
    variant = np.zeros(len(a_id), dtype=np.int64)
    b_id = 3 + np.arange(len(a_id)) % 3
    prepared = []
    block_scores = px._block_scores

    def counting(a_turned, a_of, b_images, b_of, fine):
        prepared.append(len(a_turned))
        return block_scores(a_turned, a_of, b_images, b_of, fine)

    monkeypatch.setattr(px, "COARSE_BLOCK", 8)
    monkeypatch.setattr(px, "_block_scores", counting)
    got = px._evaluate(images, a_id, variant, images, b_id, fine=False)
    assert sum(prepared) == 3  # one block per image (8 evaluations each)
    want = px.aligned_correlation(px.halve(images[a_id]), px.halve(images[b_id]), max_shift=2, margin=2)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)


# The fast path (raw windows over exact window norms, zoom as matrix products, BLAS) rounds differently from the
# readable reference, `aligned_correlation`: float32 rounding, far below the 0.005 steps of the decision's grid
# (≤ 2e-5 on ordinary pictures; up to 4e-5 beside a picture one pixel off a flat field, whose float32
# standardisation in the reference loses digits that the exact integer norms keep).
TOLERANCE = 1e-4


def hard_thumbnails() -> np.ndarray:
    """Flat, faint (one pixel off), low-contrast, noisy and ordinary pictures: where dividing by a window's
    norm goes wrong first."""
    rng = np.random.default_rng(7)
    flat = [np.full((32, 32), v, np.uint8) for v in (0, 128, 255)]
    faint = np.full((32, 32), 128, np.uint8)
    faint[16, 16] = 129
    corner = np.full((32, 32), 200, np.uint8)
    corner[:3, :3] = 10  # flat centre: only the outer windows vary
    ramp = np.tile(np.arange(32, dtype=np.uint8) // 8 + 100, (32, 1))
    noise = rng.integers(0, 256, (4, 32, 32)).astype(np.uint8)
    return np.concatenate([np.stack(flat + [faint, corner, ramp]), noise, np.stack([scene(s) for s in range(6)])])


@pytest.mark.parametrize("fine", [False, True])
def test_fast_scores_equal_the_reference_on_flat_faint_and_noisy_images(fine):
    images = hard_thumbnails()
    n = len(images)
    a_id, b_id = np.divmod(np.arange(n * n), n)  # every pair, both ways, each image with itself too
    variant = np.arange(n * n) % 8
    got = px._evaluate(images, a_id, variant, images, b_id, fine=fine)
    turned = np.stack([px.dihedral(images[a][None], v)[0] for a, v in zip(a_id, variant)])
    a_side, b_side = turned.astype(np.float32), images[b_id].astype(np.float32)
    want = (px.aligned_correlation(a_side, b_side) if fine
            else px.aligned_correlation(px.halve(a_side), px.halve(b_side), max_shift=2, margin=2))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)
    flat = np.isin(a_id, [0, 1, 2]) | np.isin(b_id, [0, 1, 2])
    assert (got[flat] == 0).all()  # a flat picture correlates with nothing, not even another flat one
    same = (a_id == b_id) & (variant == 0) & ~flat
    assert got[same].min() > 0.999


def test_a_cropped_zoom_is_that_crop_of_the_whole_zoom():
    thumbs = np.stack([scene(s) for s in range(3)]).astype(np.float32)
    for factor in (1.0, 1.1, 1.2):
        whole = px._zoom(thumbs, factor)
        assert whole.shape == thumbs.shape
        assert np.array_equal(px._zoom(thumbs, factor, slice(4, 28)), whole[:, 4:28, 4:28])
    assert not np.array_equal(px._zoom(thumbs, 1.2), thumbs)  # it does zoom


@pytest.mark.parametrize("fine", [False, True])
def test_blocks_scored_on_several_threads_give_the_numbers_of_one_thread(monkeypatch, fine):
    """The blocks of evaluations are independent: scored one per core (numpy releases the GIL), every
    evaluation gets exactly the score it gets when the blocks run one after the other."""
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (40, 32, 32)).astype(np.uint8)
    a_id, b_id = rng.integers(0, 40, 300), rng.integers(0, 40, 300)
    variant = rng.integers(0, 8, 300)
    monkeypatch.setattr(px, "COARSE_BLOCK", 16)
    monkeypatch.setattr(px, "FINE_BLOCK", 16)
    monkeypatch.setattr(px, "PIXEL_THREADS", 1)
    one = px._evaluate(images, a_id, variant, images, b_id, fine=fine)
    monkeypatch.setattr(px, "PIXEL_THREADS", 3)
    threads = []
    score = px._block_scores
    monkeypatch.setattr(px, "_block_scores", lambda *args: threads.append(threading.get_ident()) or score(*args))
    several = px._evaluate(images, a_id, variant, images, b_id, fine=fine)
    assert np.array_equal(one, several)
    assert len(set(threads)) > 1  # it did run on several threads


def test_fast_scores_without_zooms_equal_the_reference():
    images = hard_thumbnails()
    a_of, b_of = np.array([3, 3, 6, 7, 7, 8]), np.array([6, 7, 8, 9, 10, 3])
    got = px._block_scores(images, a_of, images, b_of, True, zooms=(1.0,))
    want = px.aligned_correlation(images[a_of].astype(np.float32), images[b_of].astype(np.float32), zooms=(1.0,))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)


def test_crop_descriptors_are_the_block_descriptors_of_the_image_and_of_its_crops():
    rng = np.random.default_rng(3)
    thumbs = rng.integers(0, 256, (4, 32, 32)).astype(np.uint8)
    rows = px.crop_descriptors(thumbs).reshape(4, px.DESCRIPTORS_PER_IMAGE, 64)
    np.testing.assert_allclose(rows[:, 0], px.block_descriptors(thumbs), atol=1e-6)
    # Each pixel as 20 × 20 sub-pixels: the crops (27.2 px, at 0, 2.4 or 4.8 px) fall on sub-pixel edges, so an
    # 8 × 8 block's mean over its area is a plain mean of sub-pixels.
    fine = 20
    side, slack = round(32 * px.CROP_KEEP * fine), round(32 * (1 - px.CROP_KEEP) * fine)
    assert side % 8 == 0 and abs(side - 32 * px.CROP_KEEP * fine) < 1e-9
    for c, (across, down) in enumerate(px.CROP_OFFSETS, start=1):
        left, top = round(slack * across), round(slack * down)
        for i, thumb in enumerate(thumbs):
            big = np.kron(thumb.astype(np.float64), np.ones((fine, fine)))[top:top + side, left:left + side]
            means = big.reshape(8, side // 8, 8, side // 8).mean(axis=(1, 3))
            expected = (means - means.mean()).ravel()
            np.testing.assert_allclose(rows[i, c], expected / np.linalg.norm(expected), atol=2e-5)


def test_hamming_counts_differing_bits_row_by_row_for_words_and_other_widths():
    rng = np.random.default_rng(11)
    for width in (8, 4):  # 8 bytes: whole words counted at once; other widths: bits unpacked
        a = rng.integers(0, 256, (300, width), dtype=np.uint8)
        b = rng.integers(0, 256, (300, width), dtype=np.uint8)
        expected = [sum(bin(x ^ y).count("1") for x, y in zip(ra, rb)) for ra, rb in zip(a.tolist(), b.tolist())]
        got = px.hamming(a, b)
        assert got.dtype == np.int64 and got.tolist() == expected
    assert px.hamming(a[:1], a[:1]).tolist() == [0]


def test_a_row_band_times_a_template_band_is_the_templates_correlation_at_every_shift():
    """The forward search's product: image b's row band dy times template a's band column (zoom z, shift dx) is the
    dot product of the template with b's window at (dy, dx) — what the windows gave, without making them."""
    rng = np.random.default_rng(3)
    inner, shifts, lo = 6, 3, 1
    images = rng.normal(size=(2, 10, 10)).astype(np.float32)
    templates = rng.normal(size=(1, 2, inner * inner)).astype(np.float32)
    bands = px._template_bands(templates, shifts)
    rows = px._row_bands(images, lo, inner, shifts)
    assert bands.shape == (1, 2 * shifts, inner * (inner + shifts - 1)) and rows.shape == (2, shifts, bands.shape[2])
    got = rows @ bands[0].T  # (image, dy, zoom · shifts + dx)
    for image in range(2):
        for dy in range(shifts):
            for zoom in range(2):
                for dx in range(shifts):
                    window = images[image, lo + dy:lo + dy + inner, lo + dx:lo + dx + inner].ravel()
                    assert got[image, dy, zoom * shifts + dx] == pytest.approx(window @ templates[0, zoom], abs=1e-4)


def test_two_by_two_sums_are_four_times_the_halved_thumbnail():
    thumbs = np.random.default_rng(4).integers(0, 256, (5, 32, 32)).astype(np.uint8)
    sums = px._sums_2x2(thumbs)
    assert sums.dtype == np.int32 and sums.shape == (5, 16, 16)
    np.testing.assert_array_equal(sums, (4 * px.halve(thumbs)).round().astype(np.int32))
