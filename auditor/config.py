"""One frozen configuration: every default lives here; callers override only what they set.

Threshold names say their direction (`max_…`, `min_…`), so a reader knows which side fails.
Bounds are checked once, when the config is built, with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditor.errors import ConfigError

BACKBONES = ("auto", "resnet50", "efficientnet-lite0")
LAYOUTS = ("auto", "splits", "classes")
SPLIT_STYLES = ("keras-dataset", "keras-generator")
PRECISIONS = ("auto", "float32", "bfloat16")
HELD_OUT_SPLIT_NAMES = ("val", "valid", "validation", "test")
REFERENCE_SPLIT = "train"


def default_cache_dir() -> Path:
    env = os.environ.get("AUDITOR_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "auditor"


@dataclass(frozen=True)
class Policy:
    """What each outcome means for the gate. Percentages are of the held-out split's images."""

    leakage_max_percent: float = 0.0  # fail above this share of held-out images leaking
    label_conflicts_max: int = 0  # fail above this many conflicting groups
    exact_duplicates_max_percent: float = 0.0  # warn above this share of images
    near_duplicates_max_percent: float = 1.0  # warn above this share of images
    integrity_max_findings: int = 0  # warn above this many broken or odd files
    max_imbalance_ratio: float = 3.0  # warn when the largest train class / smallest exceeds this
    alpha: float = 0.01  # significance level for the label-distribution test
    min_cramers_v: float = 0.1  # … and the effect size that makes it material


@dataclass(frozen=True)
class AuditConfig:
    # What to audit
    layout: str = "auto"
    manifest: Path | None = None
    validation_split: float | None = None
    seed: int | None = None
    split_style: str = "keras-dataset"
    # How to embed
    backbone: str = "auto"
    weights: str | None = None  # None = the backbone's default; "none" = random (tests only); else a path
    batch_size: int = 32
    precision: str = "auto"
    offline: bool = False
    workers: int = 2
    cache_dir: Path = field(default_factory=default_cache_dir)
    use_cache: bool = True
    # Integrity limits
    max_pixels: int = 100_000_000  # a larger image is treated as a decompression bomb
    max_file_mb: float = 256.0
    min_side: int = 32  # smaller images are "tiny"
    max_aspect_ratio: float = 8.0
    # Near-duplicate thresholds
    max_phash_distance: int = 6
    max_dhash_distance: int = 10
    min_cosine: float | None = None  # None = calibrated on the dataset itself
    calibration_images: int = 40
    max_group_size: int = 200
    # The gate
    policy: Policy = field(default_factory=Policy)

    def __post_init__(self) -> None:
        _one_of("backbone", self.backbone, BACKBONES)
        _one_of("layout", self.layout, LAYOUTS)
        _one_of("split_style", self.split_style, SPLIT_STYLES)
        _one_of("precision", self.precision, PRECISIONS)
        if self.validation_split is not None:
            _within("validation_split", self.validation_split, 0.0, 1.0, open_interval=True)
            if self.manifest is not None:
                raise ConfigError(
                    "validation_split cannot be combined with a manifest",
                    "A manifest already says which split each image is in.",
                )
        _within("batch_size", self.batch_size, 1, 4096)
        _within("workers", self.workers, 1, 64)
        _within("max_pixels", self.max_pixels, 1, 10**10)
        _within("max_file_mb", self.max_file_mb, 0.001, 10**6)
        _within("min_side", self.min_side, 1, 10**5)
        _within("max_aspect_ratio", self.max_aspect_ratio, 1.0, 10**4)
        _within("max_phash_distance", self.max_phash_distance, 0, 32)
        _within("max_dhash_distance", self.max_dhash_distance, 0, 32)
        if self.min_cosine is not None:
            _within("min_cosine", self.min_cosine, 0.0, 1.0)
        _within("calibration_images", self.calibration_images, 0, 10_000)
        _within("max_group_size", self.max_group_size, 2, 10**6)
        p = self.policy
        _within("policy.leakage_max_percent", p.leakage_max_percent, 0.0, 100.0)
        _within("policy.label_conflicts_max", p.label_conflicts_max, 0, 10**9)
        _within("policy.exact_duplicates_max_percent", p.exact_duplicates_max_percent, 0.0, 100.0)
        _within("policy.near_duplicates_max_percent", p.near_duplicates_max_percent, 0.0, 100.0)
        _within("policy.integrity_max_findings", p.integrity_max_findings, 0, 10**9)
        _within("policy.max_imbalance_ratio", p.max_imbalance_ratio, 1.0, 10**9)
        _within("policy.alpha", p.alpha, 0.0, 1.0, open_interval=True)
        _within("policy.min_cramers_v", p.min_cramers_v, 0.0, 1.0)

    def replace(self, **changes: Any) -> "AuditConfig":
        return dataclasses.replace(self, **changes)


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {value!r}", f"Set {key} to one of those.")


def _within(key: str, value: float, low: float, high: float, open_interval: bool = False) -> None:
    ok = (low < value < high) if open_interval else (low <= value <= high)
    if not ok:
        bracket = f"({low}, {high})" if open_interval else f"[{low}, {high}]"
        raise ConfigError(f"{key} must be in {bracket}; got {value!r}", f"Choose a value for {key} in {bracket}.")
