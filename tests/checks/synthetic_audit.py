"""An AuditContext built in memory from vectors and image properties (no files, no backbone), for the fast
unit tests of label_issues, outliers and image_quality."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import numpy as np

from auditor.encoding.cache import Cache
from auditor.config import AuditConfig
from auditor.context import AuditContext
from auditor.index.dataset import DatasetIndex, ImageRecord
from auditor.encoding.encode import Encoded
from auditor.encoding.imaging import ImageScan

NORMAL_PROPERTIES = {"brightness": 120.0, "contrast": 50.0, "sharpness": 600.0, "colourfulness": 40.0,
                     "entropy": 7.3, "greyscale_as_rgb": False, "jpeg_quality": 90, "camera_model": None}


def sha_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def synthetic_context(items: list[dict], with_embeddings: bool = True, **config) -> AuditContext:
    """items: dicts with path, label, split (default train), content (default path: same content = same
    sha), hashes_of (another item's content: the same perceptual hashes, i.e. a near copy), vector
    (np.ndarray, when embedding), properties (overrides), width/height/mode, problems (imaging Problems)."""
    records, record_sha, scans, embeddings = [], [], {}, {}
    for item in items:
        path = item["path"]
        sha = sha_of(item.get("content", path))
        records.append(ImageRecord(path, Path("/nonexistent") / path, split=item.get("split", "train"),
                                   label=item["label"]))
        record_sha.append(sha)
        if sha not in scans:
            # A 32×32 grey thumbnail of random pixels drawn from the content: different contents are never
            # near-duplicates, unless an item names another's look (a near copy: the same pixels, so the same
            # hash codes).
            look = item.get("hashes_of", item.get("content", path))
            key = hashlib.sha256(look.encode()).hexdigest()
            grey = np.random.default_rng(int(key[:8], 16)).integers(0, 256, (32, 32), dtype=np.uint8)
            scans[sha] = ImageScan(sha256=sha, file_size=1000, format="JPEG", mode=item.get("mode", "RGB"),
                                   width=item.get("width", 500), height=item.get("height", 375),
                                   pixel_hash=sha,
                                   grey32=base64.b64encode(grey.tobytes()).decode("ascii"),
                                   properties={**NORMAL_PROPERTIES, **item.get("properties", {})},
                                   problems=list(item.get("problems", [])))
        if with_embeddings and "vector" in item:
            embeddings[sha] = np.asarray(item["vector"], dtype=np.float32)
    index = DatasetIndex(root=Path("/nonexistent"), layout="splits", records=records)
    encoded = Encoded(record_sha=record_sha, read_problems={}, scans=scans, embeddings=embeddings)
    backbone = object() if with_embeddings else None
    config.setdefault("calibration_images", 0)
    return AuditContext(index=index, config=AuditConfig(**config), encoded=encoded, backbone=backbone,
                        cache=Cache(None))


def gaussian_classes(n_per_class: int, n_classes: int, dim: int = 32, spread: float = 0.35,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit-ish vectors around one random centre per class, and their true class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    vectors = centres[labels] + spread * rng.normal(size=(len(labels), dim)) / np.sqrt(dim) * 3
    return vectors.astype(np.float32), labels
