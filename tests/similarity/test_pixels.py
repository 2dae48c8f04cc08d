"""Pixel-tier primitives on real (small, generated) images: hashes equal imagehash's, rotated copies hash
close under the matching variant, aligned correlation separates copies from other pictures."""

from __future__ import annotations

import imagehash
import numpy as np
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
