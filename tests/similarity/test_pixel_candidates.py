"""Pixel-likeness candidates (evidence.search): on small images a rotated, re-cropped copy that the embedding
does not rank near its source is still found, under the rotation that matches best; on full-size images the
search stays the embedding's (plus hashes): there the extra look-alike pairs cost precision (evidence.py)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from auditor.encoding.imaging import ScanLimits, scan_bytes
from auditor.similarity import evidence as ev
from auditor.similarity.input_size import SMALL_SIDE, are_small
from auditor.similarity.pixels import decode_grey32


def picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((128, 96), Image.Resampling.BICUBIC)


def tiny_grey32(image: Image.Image) -> np.ndarray:
    """The image as a 32 px JPEG file, scanned like any dataset file: its grey thumbnail."""
    buffer = io.BytesIO()
    scale = 32 / max(image.size)
    small = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)),
                                        Image.Resampling.LANCZOS)
    small.save(buffer, "JPEG", quality=75)
    scan, _ = scan_bytes(buffer.getvalue(), ScanLimits(min_side=8))
    return decode_grey32(scan.grey32)


def rotated_copy_search(small_images: bool) -> tuple[ev.Pairs, int]:
    originals = [picture(seed) for seed in range(60)]
    thumbs = np.stack([tiny_grey32(im) for im in originals])
    source = 17
    copy = originals[source].crop((6, 4, 122, 92)).rotate(90, expand=True)  # re-cropped, turned a quarter
    copy_thumbs = tiny_grey32(copy)[None]
    # Fake embeddings (search logic only): the copy's points away from its source, so the embedding search
    # never proposes the source; hash thresholds of 0 keep the hash tier out of it too.
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(60, 16)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    data = ev.make_dataset(unit, thumbs, small_images=small_images)
    pairs = ev.search(data, -unit[[source]], copy_thumbs, max_phash=0, max_dhash=0)
    return pairs, source


def test_a_rotated_copy_of_a_tiny_image_is_found_by_pixel_likeness():
    pairs, source = rotated_copy_search(small_images=True)
    found = np.flatnonzero(pairs.target == source)
    assert len(found) == 1
    k = found[0]
    assert pairs.rank[k] == -1 and not pairs.hash_match[k]  # neither the embedding nor a hash found it
    assert pairs.variant[k] not in (0, 4)  # matched under a rotation
    assert pairs.correlation[k] >= 0.9


def test_full_size_images_get_no_pixel_candidates():
    pairs, source = rotated_copy_search(small_images=False)
    assert source not in set(pairs.target.tolist())
    assert set(pairs.rank.tolist()) <= set(range(ev.CANDIDATES))  # embedding neighbours only


def test_without_embeddings_pixel_likeness_is_the_search():
    originals = [picture(seed) for seed in range(30)]
    thumbs = np.stack([tiny_grey32(im) for im in originals])
    data = ev.make_dataset(None, thumbs)
    copy = tiny_grey32(originals[5].crop((6, 4, 122, 92)).rotate(270, expand=True))[None]
    pairs = ev.search(data, None, copy, max_phash=0, max_dhash=0)
    k = np.flatnonzero(pairs.target == 5)
    assert len(k) == 1 and pairs.correlation[k[0]] >= 0.9


def test_small_means_a_typical_longer_side_of_at_most_small_side():
    assert are_small([32] * 10 + [500] * 3)
    assert are_small([SMALL_SIDE] * 5)
    assert not are_small([SMALL_SIDE + 1] * 5)
    assert not are_small([32] * 3 + [500] * 10)
    assert not are_small([])
