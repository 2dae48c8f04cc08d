"""Data for bench_scale.py: a large image dataset cut from the shared photos, and resampled embeddings.

Images: image i is a random crop (seeded by (seed, i)) of photo i mod P of the shared photos, resized so
its long side is 32–256 px, saved as JPEG (quality 70–95). Crops of one photo all go to the same split
(every fifth photo is `val`), so the split is what a careful person would make, while the dataset is
still full of overlapping crops of one photo: the near-duplicate search meets the worst case of a
resampled dataset. Generation is idempotent (a file already there is kept), files are written atomically.

Vectors: real EfficientNet-Lite0 embeddings of the shared photos, resampled with small Gaussian noise
(σ relative to the embeddings' own spread), so a million of them have the neighbourhood structure of real
photos rather than of random points.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SOURCES = {  # dataset folder → {split folder: our split}
    "cats_and_dogs_filtered": ("train", "validation"),
    "hymenoptera_data": ("train", "val"),
}
MIN_SIDE, MAX_SIDE = 32, 256


def source_photos(shared: Path) -> list[tuple[Path, str]]:
    """(photo, class) of every shared photo, in a fixed order."""
    photos = []
    for dataset, splits in SOURCES.items():
        for split in splits:
            for label_dir in sorted((shared / dataset / split).iterdir()):
                if label_dir.is_dir():
                    photos += [(p, label_dir.name) for p in sorted(label_dir.iterdir()) if p.suffix.lower() in (".jpg", ".jpeg")]
    return photos


def image_path(out: Path, i: int, photo: int, label: str) -> Path:
    split = "val" if photo % 5 == 0 else "train"
    return out / split / label / f"p{photo:05d}_{i:07d}.jpg"


def _crop_photo(args: tuple[str, str, int, int, int, int, str, int | None]) -> int:
    """All crops of one photo (decoded once). Returns how many files were written."""
    from PIL import Image

    photo_path, label, photo, photos, count, seed, out, side = args
    out_dir = Path(out)
    wanted = [i for i in range(photo, count, photos) if not image_path(out_dir, i, photo, label).exists()]
    if not wanted:
        return 0
    with Image.open(photo_path) as image:
        image = image.convert("RGB")
        width, height = image.size
        for i in wanted:
            rng = np.random.default_rng([seed, i])
            scale = rng.uniform(0.3, 1.0)
            aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            w = int(np.clip(round(scale * min(width, height) * np.sqrt(aspect)), 8, width))
            h = int(np.clip(round(scale * min(width, height) / np.sqrt(aspect)), 8, height))
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            long_side = int(np.exp(rng.uniform(np.log(MIN_SIDE), np.log(MAX_SIDE + 1))))
            factor = long_side / max(w, h)
            size = (max(MIN_SIDE, round(w * factor)), max(MIN_SIDE, round(h * factor)))
            if side:  # fixed square images, as in tiny-image datasets (JPEG q75 like the truth benchmark's 32 px rows)
                size = (side, side)
            crop = image.crop((x, y, x + w, y + h)).resize(size, Image.BILINEAR if not side else Image.LANCZOS)
            buffer = io.BytesIO()
            crop.save(buffer, format="JPEG", quality=75 if side else int(rng.integers(70, 96)))
            target = image_path(out_dir, i, photo, label)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(buffer.getvalue())
            os.replace(tmp, target)
    return len(wanted)


def generate_images(shared: Path, out: Path, count: int, seed: int = 0, workers: int = 2, side: int | None = None) -> int:
    """Write `count` crops under out/{train,val}/<class>/ (`side`: all side × side px); returns how many were
    written now."""
    photos = source_photos(shared)
    jobs = [(str(p), label, k, len(photos), count, seed, str(out), side) for k, (p, label) in enumerate(photos)
            if k < count]
    with ProcessPoolExecutor(workers) as pool:
        return sum(pool.map(_crop_photo, jobs, chunksize=8))


def resampled_vectors(base: np.ndarray, count: int, seed: int = 0, noise: float = 0.1, neighbours: int = 10,
                      chunk: int = 65_536) -> np.ndarray:
    """`count` float16 unit vectors on the manifold of the real ones: each is a random real embedding moved
    part of the way (up to half) towards one of its `neighbours` nearest real embeddings, plus Gaussian
    noise of `noise` × the embeddings' RMS spread per dimension. Written in chunks, so memory stays at the
    output's size."""
    import faiss

    base = np.asarray(base, dtype=np.float32)
    base = base / np.linalg.norm(base, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    _sims, near = index.search(base, neighbours + 1)
    rng = np.random.default_rng(seed)
    spread = float(np.sqrt(np.mean((base - base.mean(axis=0)) ** 2)))
    out = np.empty((count, base.shape[1]), dtype=np.float16)
    for start in range(0, count, chunk):
        stop = min(count, start + chunk)
        which = rng.integers(0, len(base), stop - start)
        partner = near[which, rng.integers(1, neighbours + 1, stop - start)]
        t = rng.uniform(0.0, 0.5, (stop - start, 1)).astype(np.float32)
        rows = (1 - t) * base[which] + t * base[partner]
        rows += rng.standard_normal(rows.shape, dtype=np.float32) * (noise * spread)
        out[start:stop] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return out
