"""Calibration copies of tiny images are re-renders: the same size as their source and as crisp, not the soft
interpolation of a crop (real tiny leaks are re-rendered from a larger original; see positives.py)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from auditor.similarity.positives import make_copy, same_shot
from tests.e2e.cli_helpers import SAMPLES


def detail(image: Image.Image) -> float:
    """Mean absolute Laplacian of the grey image over its standard deviation: how crisp, whatever the contrast."""
    g = np.asarray(image.convert("L"), dtype=np.float32)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(np.abs(lap).mean() / max(g.std(), 1e-6))


def tiny_photos(count: int = 30) -> list[Image.Image]:
    photos = []
    for path in sorted(p for p in SAMPLES.rglob("*.jpg") if p.stat().st_size > 2000):
        try:
            photos.append(Image.open(path).convert("RGB").resize((32, 32), Image.Resampling.LANCZOS))
        except OSError:
            continue  # the samples' deliberately broken file
        if len(photos) == count:
            break
    return photos


def test_a_tiny_same_shot_copy_keeps_its_size_and_its_crispness():
    photos = tiny_photos()
    assert len(photos) >= 20
    ratios = []
    for i, image in enumerate(photos):
        copy = same_shot(image, np.random.default_rng(i))
        assert copy.size == image.size
        ratios.append(detail(copy) / detail(image))
    # An interpolated crop of the tiny image keeps about three quarters of its detail (median 0.74 measured).
    assert np.median(ratios) >= 0.85


def test_every_kind_of_tiny_copy_is_a_tiny_jpeg():
    image = tiny_photos(1)[0]
    for kind in ("same_shot", "rotate", "grey", "shift", "mirror_reencode"):
        copy = Image.open(io.BytesIO(make_copy(image, kind, np.random.default_rng(0))))
        assert copy.format == "JPEG" and copy.size == (32, 32)
