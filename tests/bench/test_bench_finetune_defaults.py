"""bench/bench_finetune_defaults.py: the planted-copies case (the near-duplicate issue's end-to-end run)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))


def _photos(root: Path) -> None:
    import numpy as np
    from PIL import Image

    for split, count in (("train", 6), ("validation", 6)):
        for label in ("cats", "dogs"):
            folder = root / "cats_and_dogs_filtered" / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.random.default_rng([len(split), len(label), i]).integers(0, 256, (60, 80, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{label}.{i}.jpg")


def test_planted_copies_replace_validation_images_under_their_sources_label(tmp_path):
    from PIL import Image

    from bench_finetune_defaults import build

    _photos(tmp_path / "shared")
    root = build(tmp_path / "shared", tmp_path / "work", 32, train=8, val=8, plant=3)
    val = sorted((root / "val").rglob("*.jpg"))
    copies = [p for p in val if p.name.startswith("copy_")]
    assert len(val) == 8 and len(copies) == 3  # the split keeps its size
    for copy in copies:
        source = copy.name.split("_of_", 1)[1]
        assert (root / "train" / copy.parent.name / source).is_file()  # a train photo, under the same label
        with Image.open(copy) as image:
            assert image.size == (32, 32)
    assert build(tmp_path / "shared", tmp_path / "work", 32, train=8, val=8, plant=3) == root  # built once
    plain = build(tmp_path / "shared", tmp_path / "work", 32, train=8, val=8)
    assert plain != root and not any(p.name.startswith("copy_") for p in plain.rglob("*.jpg"))
