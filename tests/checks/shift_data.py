"""Real photos and real embeddings for the split_shift and shortcuts tests, built once per test session.

The pool is 60 ants + 60 bees from ``<repo>/../shared/datasets/hymenoptera_data/train`` plus, for 20 of
each, a shifted copy (downscaled to half size, brightened 1.5×, blurred). Test datasets are CSV manifests
over the pool, so a random re-split reuses every cached embedding; the embedding cache lives in the
session's base temp folder and is shared by every test module that asks for it.
"""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

import pytest

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
HYMENOPTERA = DATASETS / "hymenoptera_data" / "train"
PER_CLASS = 60
SHIFTED_PER_CLASS = 20
CLASSES = ("ants", "bees")


def require_datasets() -> Path:
    if not HYMENOPTERA.is_dir():
        pytest.skip(f"real photos not found at {HYMENOPTERA}")
    return HYMENOPTERA


def shared_cache(tmp_path_factory) -> Path:
    """One embedding cache for the whole session, whichever module asks first."""
    path = tmp_path_factory.getbasetemp() / "auditor-shift-cache"
    path.mkdir(exist_ok=True)
    return path


def shift(source: Path, destination: Path) -> None:
    """The planted shift: half the width and height, 1.5× brighter, slightly blurred, JPEG q90."""
    from PIL import Image, ImageEnhance, ImageFilter

    with Image.open(source) as image:
        image = image.convert("RGB")
        image = image.resize((image.width // 2, image.height // 2), Image.Resampling.BILINEAR)
        image = ImageEnhance.Brightness(image).enhance(1.5).filter(ImageFilter.GaussianBlur(1.2))
        image.save(destination, "JPEG", quality=90)


def image_pool(tmp_path_factory) -> dict[str, dict[str, list[str]]]:
    """{class: {"original": [relpath…], "shifted": [relpath…]}} under `pool_root(...)`, built once."""
    source = require_datasets()
    root = pool_root(tmp_path_factory)
    pool: dict[str, dict[str, list[str]]] = {}
    for label in CLASSES:
        files = sorted(p for p in (source / label).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[:PER_CLASS]
        if len(files) < PER_CLASS:
            pytest.skip(f"fewer than {PER_CLASS} photos in {source / label}")
        (root / "original" / label).mkdir(parents=True, exist_ok=True)
        (root / "shifted" / label).mkdir(parents=True, exist_ok=True)
        originals, shifted = [], []
        for i, file in enumerate(files):
            target = root / "original" / label / file.name
            if not target.exists():
                shutil.copyfile(file, target)
            originals.append(f"original/{label}/{file.name}")
            if i < SHIFTED_PER_CLASS:
                moved = root / "shifted" / label / file.name
                if not moved.exists():
                    shift(file, moved)
                shifted.append(f"shifted/{label}/{file.name}")
        pool[label] = {"original": originals, "shifted": shifted}
    return pool


def pool_root(tmp_path_factory) -> Path:
    path = tmp_path_factory.getbasetemp() / "auditor-shift-pool"
    path.mkdir(exist_ok=True)
    return path


def write_manifest(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """rows: (relpath, label, split)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    return path


def planted_rows(pool: dict, shifted_classes: tuple[str, ...] = CLASSES) -> list[tuple[str, str, str]]:
    """Train: the 40 untouched originals per class. Val: the 20 others, shifted for `shifted_classes`."""
    rows = []
    for label in CLASSES:
        originals = pool[label]["original"]
        rows += [(p, label, "train") for p in originals[SHIFTED_PER_CLASS:]]
        held = pool[label]["shifted"] if label in shifted_classes else originals[:SHIFTED_PER_CLASS]
        rows += [(p, label, "val") for p in held]
    return rows


def random_split_rows(pool: dict, seed: int) -> list[tuple[str, str, str]]:
    """The same 120 originals, a third of each class drawn at random into val."""
    rng = random.Random(seed)
    rows = []
    for label in CLASSES:
        originals = list(pool[label]["original"])
        rng.shuffle(originals)
        rows += [(p, label, "val") for p in originals[:SHIFTED_PER_CLASS]]
        rows += [(p, label, "train") for p in originals[SHIFTED_PER_CLASS:]]
    return rows
