"""bench/scale_data.py: the generated scale datasets are what the benchmarks say they are."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "datasets"
sys.path.insert(0, str(REPO / "bench"))


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/datasets")
def test_fixed_side_crops_are_square_tiny_and_reproducible(tmp_path):
    from scale_data import generate_images

    assert generate_images(SHARED, tmp_path / "a", 6, seed=0, workers=1, side=32) == 6
    assert generate_images(SHARED, tmp_path / "b", 6, seed=0, workers=1, side=32) == 6
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.jpg"))
    assert len(files) == 6 and {p.parts[0] for p in files} <= {"train", "val"}
    for relative in files:
        with Image.open(tmp_path / "a" / relative) as image:
            assert image.size == (32, 32)
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
    assert generate_images(SHARED, tmp_path / "a", 6, seed=0, workers=1, side=32) == 0  # idempotent
