"""A small real-photo dataset with planted problems, prepared (hashed, scanned, embedded) once per session
for the label_issues, outliers and image_quality tests.

From ``<repo>/../shared/datasets``: 45 + 15 ants and bees (hymenoptera_data, train + val) and 45 + 15
cats and dogs (cats_and_dogs_filtered, train + validation) in ``train/`` and ``val/`` class folders —
240 real photos. Planted:

- 17 photos moved into a wrong class folder (cats↔dogs, ants↔bees, and two across the pairs);
- 3 images that belong to no class: hymenoptera's own ``imageNotFound.gif`` placeholder, a blank grey
  frame, and a screenshot-like synthetic picture (a white page with a title bar, buttons and text lines);
- 3 degraded copies of photos not otherwise used: darkened to 15 %, Gaussian-blurred, and converted to
  greyscale but saved as RGB.

Embedded once with the offline EfficientNet-Lite0 backbone into a session cache (246 images).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
HYMENOPTERA = DATASETS / "hymenoptera_data"
CATS_DOGS = DATASETS / "cats_and_dogs_filtered"

# (source split folder, class, destination split, how many) — files taken in sorted order.
QUOTAS = [
    (HYMENOPTERA / "train", "ants", "train", 45), (HYMENOPTERA / "train", "bees", "train", 45),
    (HYMENOPTERA / "val", "ants", "val", 15), (HYMENOPTERA / "val", "bees", "val", 15),
    (CATS_DOGS / "train", "cats", "train", 45), (CATS_DOGS / "train", "dogs", "train", 45),
    (CATS_DOGS / "validation", "cats", "val", 15), (CATS_DOGS / "validation", "dogs", "val", 15),
]
# (split, true class, wrong class, how many): the n-th, 2n-th, … photo of that class is moved.
FLIPS = [
    ("train", "cats", "dogs", 5), ("train", "dogs", "cats", 3), ("val", "cats", "dogs", 1), ("val", "dogs", "cats", 1),
    ("train", "ants", "bees", 3), ("train", "bees", "ants", 2), ("train", "cats", "bees", 1), ("train", "ants", "dogs", 1),
]


@dataclass
class Planted:
    root: Path
    ctx: object  # AuditContext
    flipped: set[str]  # relative paths of photos filed under a wrong class
    no_class: dict[str, str]  # kind → relative path
    degraded: dict[str, str]  # kind → relative path


_BUILT: dict[str, Planted] = {}


def require_datasets() -> None:
    if not (HYMENOPTERA.is_dir() and CATS_DOGS.is_dir()):
        pytest.skip(f"real photos not found under {DATASETS}")


def _photos(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg")),
                  key=lambda p: p.name)


def _screenshot(path: Path) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (640, 400), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 640, 36), fill=(40, 60, 120))
    draw.text((12, 10), "Settings - Untitled document", fill=(255, 255, 255))
    for row in range(9):
        y = 60 + 32 * row
        draw.text((24, y), f"Option {row + 1}: enable the thing number {row * 7 % 11}", fill=(20, 20, 20))
        draw.rectangle((520, y - 2, 600, y + 18), outline=(120, 120, 120), fill=(225, 225, 235))
    draw.rectangle((24, 360, 140, 390), fill=(0, 120, 215))
    draw.text((56, 368), "OK", fill=(255, 255, 255))
    image.save(path, "PNG")


def _degrade(source: Path, destination: Path, kind: str) -> None:
    from PIL import Image, ImageEnhance, ImageFilter

    with Image.open(source) as image:
        image = image.convert("RGB")
        if kind == "dark":
            image = ImageEnhance.Brightness(image).enhance(0.15)
        elif kind == "blurry":
            image = image.filter(ImageFilter.GaussianBlur(4))
        elif kind == "greyscale_as_rgb":
            image = image.convert("L").convert("RGB")
        image.save(destination, "JPEG", quality=92)


def build(tmp_path_factory) -> Planted:
    """Copy the subset, plant the problems, and prepare the audit context (once per session)."""
    if "planted" in _BUILT:
        return _BUILT["planted"]
    require_datasets()
    from auditor.config import AuditConfig
    from auditor.runner import prepare

    root = tmp_path_factory.mktemp("planted_photos")
    cache = tmp_path_factory.mktemp("planted_photos_cache")
    used: dict[tuple[str, str], list[str]] = {}
    spare: dict[str, list[Path]] = {}
    for source, label, split, count in QUOTAS:
        files = _photos(source / label)
        if len(files) < count + 2:
            pytest.skip(f"too few photos in {source / label}")
        (root / split / label).mkdir(parents=True, exist_ok=True)
        for path in files[:count]:
            shutil.copyfile(path, root / split / label / path.name)
            used.setdefault((split, label), []).append(path.name)
        spare.setdefault(label, []).extend(files[count:count + 2])
    flipped: set[str] = set()
    for split, true_label, wrong_label, count in FLIPS:
        names = [n for n in used[(split, true_label)] if f"{split}/{true_label}/{n}" not in flipped]
        step = max(1, len(names) // (count + 1))
        for name in names[step::step][:count]:
            (root / split / true_label / name).rename(root / split / wrong_label / name)
            used[(split, true_label)].remove(name)
            flipped.add(f"{split}/{wrong_label}/{name}")
    placeholder = HYMENOPTERA / "train" / "ants" / "imageNotFound.gif"
    if not placeholder.is_file():
        pytest.skip(f"{placeholder} not found")
    shutil.copyfile(placeholder, root / "train" / "ants" / "imageNotFound.gif")
    from PIL import Image

    Image.new("RGB", (400, 300), (128, 128, 128)).save(root / "train" / "bees" / "blank_frame.jpg", "JPEG", quality=92)
    _screenshot(root / "train" / "cats" / "screenshot.png")
    no_class = {"placeholder": "train/ants/imageNotFound.gif", "blank": "train/bees/blank_frame.jpg",
                "screenshot": "train/cats/screenshot.png"}
    degraded = {"dark": ("dogs", "train/dogs/dark_copy.jpg"), "blurry": ("cats", "train/cats/blurred_copy.jpg"),
                "greyscale_as_rgb": ("bees", "train/bees/grey_copy.jpg")}
    for kind, (label, relpath) in degraded.items():
        _degrade(spare[label][0], root / relpath, kind)
    config = AuditConfig(backbone="efficientnet-lite0", cache_dir=cache, offline=True, seed=0)
    ctx = prepare(root, config)
    planted = Planted(root=root, ctx=ctx, flipped=flipped, no_class=no_class,
                      degraded={kind: relpath for kind, (_label, relpath) in degraded.items()})
    _BUILT["planted"] = planted
    return planted


def fresh_context(planted: Planted, **config_changes):
    """A new context over the same encodings (nothing re-read), with a changed config."""
    from auditor.context import AuditContext

    ctx = planted.ctx
    return AuditContext(index=ctx.index, config=ctx.config.replace(**config_changes), encoded=ctx.encoded,
                        backbone=ctx.backbone, cache=ctx.cache)
