"""A small folder of class folders of real photos with planted problems, for the API's equivalence tests.

From ``<repo>/../shared/datasets/hymenoptera_data/train``: 15 ants and 15 bees (the smallest files, so
copying and embedding stay cheap), plus planted problems that give findings with ids to compare:

- 3 exact copies of ants under new names (exact duplicates; Keras' shuffle puts some across the split: leakage),
- 2 bees filed under ants as well (the same bytes with two labels: label conflicts),
- 1 ant downscaled to 60 % and 1 bee mirrored (near-duplicates),
- 1 tiny 24 × 18 crop (integrity / image quality).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageOps

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
HYMENOPTERA = DATASETS / "hymenoptera_data" / "train"
PER_CLASS = 15


def photos(label: str) -> list[Path]:
    folder = HYMENOPTERA / label
    if not folder.is_dir():
        pytest.skip(f"real photos not found: {folder} is missing")
    files = sorted(folder.glob("*.jpg"), key=lambda p: (p.stat().st_size, p.name))
    if len(files) < PER_CLASS + 4:
        pytest.skip(f"need {PER_CLASS + 4} photos in {folder}")
    return files


def build_planted(root: Path) -> Path:
    """Write the dataset under `root` (created) and return it."""
    ants, bees = photos("ants"), photos("bees")
    for label, files in (("ants", ants), ("bees", bees)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for source in files[:PER_CLASS]:
            shutil.copyfile(source, root / label / source.name)
    for i, source in enumerate(ants[:3]):
        shutil.copyfile(source, root / "ants" / f"copy_{i}.jpg")
    for i, source in enumerate(bees[:2]):
        shutil.copyfile(source, root / "ants" / f"filed_wrong_{i}.jpg")
    with Image.open(ants[5]) as image:
        image.convert("RGB").resize((int(image.width * 0.6), int(image.height * 0.6))).save(
            root / "ants" / "smaller.jpg", quality=90)
    with Image.open(bees[6]) as image:
        ImageOps.mirror(image.convert("RGB")).save(root / "bees" / "mirrored.jpg", quality=90)
    with Image.open(bees[7]) as image:
        image.convert("RGB").crop((0, 0, 24, 18)).save(root / "bees" / "tiny.jpg", quality=90)
    return root
