"""Known positives: copies of the dataset's own images made the way real leaks are made.

A real leak is rarely one clean transform. It is the same shot post-processed differently: cropped a
little at another offset, rescaled, colour- and contrast-shifted, re-encoded, sometimes mirrored; now
and then rotated by a multiple of 90 degrees or turned grey. Tiny images (≤ 64 px) are also shifted by a
pixel or two and re-encoded. Calibration measures recall on such copies, so what it reports is what a
user with real leaks can expect, not what a resize alone would give.

Every copy keeps the size class of its source: a 32 px image's copy is again 32 px (as in CIFAR-like
sets, where every image has one size), a photo's copy is 60–100 % of its size.

A tiny image's same-shot copy is modelled as a re-render: in a tiny set, a leak is the larger original
cropped differently and squared down again, so it is as crisp as its source, not the soft interpolation of
a crop of the tiny image. The copy is cropped from the image upsampled 4×, brought back down with Lanczos
and sharpened by a random amount (unsharp mask 0–150 %). Measured against same-shot leaks re-rendered from
the native photos (bench/truth_data.py) at 32 and 64 px, the interpolated crop aligned better with its
source than real leaks do (median correlation 0.97 vs 0.95, 32 px), so calibration overstated recall at
strict thresholds and chose them; the re-render's spread matches the real one at both sizes.
"""

from __future__ import annotations

import io
from typing import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

SMALL_SIDE = 64  # images whose longer side is at most this are "tiny": pixel shifts matter, sizes are fixed

# kind → how many of every 10 copies are of this kind (the mix the recall estimate averages over)
MIX_LARGE = {"same_shot": 6, "rotate": 1, "grey": 1, "resize": 1, "mirror_reencode": 1}
MIX_SMALL = {"same_shot": 6, "rotate": 1, "grey": 1, "shift": 1, "mirror_reencode": 1}


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=int(quality))
    return buffer.getvalue()


def _jitter(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Brightness, contrast and saturation ±20 %, and a per-channel colour cast of ±6 %."""
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.8, 1.2))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.8, 1.2))
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.75, 1.25))
    gains = rng.uniform(0.94, 1.06, size=3).astype(np.float32)
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) * gains, 0, 255).astype(np.uint8))


def same_shot(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Crop 5–20 % at a random offset, rescale, jitter colours, mirror with probability 0.3."""
    w, h = image.size
    if max(w, h) <= SMALL_SIDE:
        return _tiny_same_shot(image, rng)
    keep = 1.0 - rng.uniform(0.05, 0.20)
    cw, ch = max(1, round(w * keep)), max(1, round(h * keep))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    image = image.crop((x0, y0, x0 + cw, y0 + ch))
    scale = rng.uniform(0.6, 1.0) / keep
    size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
    image = _jitter(image.resize(size, Image.Resampling.BICUBIC), rng)
    return ImageOps.mirror(image) if rng.random() < 0.3 else image


TINY_UPSAMPLE = 4  # the stand-in for the larger original a tiny image was squared down from
TINY_SHARPEN = (0, 150)  # unsharp-mask percent range: the re-render's crispness


def _tiny_same_shot(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A tiny image re-rendered: crop 5–20 % (aspect ±3 %) of its 4× upsampling at a random offset, Lanczos back
    to its own size, sharpen 0–150 %, jitter colours, mirror with probability 0.3 (see the module docstring)."""
    w, h = image.size
    big = image.resize((w * TINY_UPSAMPLE, h * TINY_UPSAMPLE), Image.Resampling.BICUBIC)
    bw, bh = big.size
    keep = 1.0 - rng.uniform(0.05, 0.20)
    cw, ch = max(1, round(bw * keep)), min(bh, max(1, round(bh * keep * rng.uniform(0.97, 1.03))))
    x0, y0 = int(rng.integers(0, bw - cw + 1)), int(rng.integers(0, bh - ch + 1))
    image = big.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.LANCZOS)
    percent = int(rng.integers(TINY_SHARPEN[0], TINY_SHARPEN[1] + 1))
    if percent:
        image = image.filter(ImageFilter.UnsharpMask(radius=1, percent=percent, threshold=0))
    image = _jitter(image, rng)
    return ImageOps.mirror(image) if rng.random() < 0.3 else image


def shift(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Move the content 1–2 px (edges replicated), as a re-crop of a tiny image does."""
    array = np.asarray(image)
    dx, dy = (int(rng.choice([-2, -1, 1, 2])) for _ in range(2))
    padded = np.pad(array, ((2, 2), (2, 2), (0, 0)), mode="edge")
    h, w = array.shape[:2]
    return Image.fromarray(padded[2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w])


def make_copy(image: Image.Image, kind: str, rng: np.random.Generator) -> bytes:
    """The encoded bytes of one copy of `image` (RGB) of the given kind."""
    if kind == "same_shot":
        return encode_jpeg(same_shot(image, rng), int(rng.integers(50, 91)))
    if kind == "rotate":  # a re-processed shot, turned: rotation rarely comes alone
        turned = same_shot(image, rng).rotate(int(rng.choice([90, 180, 270])), expand=True)
        return encode_jpeg(turned, int(rng.integers(50, 91)))
    if kind == "grey":
        grey = ImageOps.grayscale(same_shot(image, rng)).convert("RGB")
        return encode_jpeg(grey, int(rng.integers(50, 91)))
    if kind == "shift":
        return encode_jpeg(shift(image, rng), int(rng.integers(60, 96)))
    if kind == "resize":
        factor = rng.uniform(0.3, 0.7)
        smaller = image.resize((max(1, round(image.width * factor)), max(1, round(image.height * factor))),
                               Image.Resampling.BILINEAR)
        return encode_jpeg(smaller, int(rng.integers(60, 96)))
    if kind == "mirror_reencode":
        return encode_jpeg(ImageOps.mirror(image), int(rng.integers(50, 96)))
    raise ValueError(f"unknown copy kind {kind!r}")


def copy_kinds(image_size: tuple[int, int], copies: int, offset: int = 0) -> list[str]:
    """`copies` kinds for one image, cycling through the mix so a sample covers every kind in proportion."""
    mix = MIX_SMALL if max(image_size) <= SMALL_SIDE else MIX_LARGE
    cycle = [kind for kind, weight in mix.items() for _ in range(weight)]
    # Interleave so that the first kinds of every image are not all `same_shot`.
    cycle = cycle[::2] + cycle[1::2]
    return [cycle[(offset + i) % len(cycle)] for i in range(copies)]


KINDS: dict[str, Callable] = {k: None for k in {**MIX_LARGE, **MIX_SMALL}}  # names, for the report
