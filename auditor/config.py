"""One frozen configuration: every default lives here; callers override only what they set.

Threshold names say their direction (`max_…`, `min_…`), so a reader knows which side fails.
Bounds are checked once, when the config is built, with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auditor.errors import ConfigError

if TYPE_CHECKING:
    from auditor.finetune.history import History

BACKBONES = ("auto", "resnet50", "efficientnet-lite0")
LAYOUTS = ("auto", "splits", "classes")
SPLIT_STYLES = ("keras-dataset", "keras-generator")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
ENGINES = ("local", "ray")
HELD_OUT_SPLIT_NAMES = ("val", "valid", "validation", "test")
REFERENCE_SPLIT = "train"
GATE_STATUSES = ("pass", "warn", "fail")  # what a check's outcome can be mapped to by the policy


def default_workers() -> int:
    """Decoding workers: this process's cores (at most 64). On a GPU machine the cores decode while the GPU
    embeds; two (the default before) left most of them idle there."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 2
    return max(1, min(64, cores))


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
    # Split shift and shortcuts (tested at `alpha` above; each also needs its effect size to be material)
    min_domain_auc: float = 0.6  # fail a held-out split when a classifier tells it from train with this ROC-AUC
    min_drift_effect: float = 0.2  # warn on property drift of this Wasserstein distance, in units of train's spread
    min_shortcut_lift: float = 0.3  # warn when file properties alone predict the label this well (0 = chance, 1 = perfect)
    # Label issues, outliers, image quality warn on their findings (label_issues: strong evidence only;
    # image_quality: not odd size/shape); they fail only above these shares (100 = never)
    label_issues_max_percent: float = 100.0  # fail above this share of a split's images probably mislabelled
    outliers_max_percent: float = 100.0  # fail above this share of a split's images that are outliers
    image_quality_max_percent: float = 100.0  # fail above this share of a split's images with a quality issue
    # Per check id, the status each outcome is reported as, e.g. {"near_duplicates": {"warn": "fail"}}
    statuses: dict[str, dict[str, str]] = field(default_factory=dict, hash=False)


# How long the head trains. "fast" (the default) trains in minutes on two CPU cores; "reference" is the seed
# run's own schedule (Adam at 5e-6, batches of 32, up to 100 epochs, patience 10): tens of minutes per 1 000
# images. On CPUs an epoch of the 65M-parameter head costs mostly its optimizer updates, one per batch: batches
# of 256 made an epoch 5× cheaper than batches of 32 (145 s vs 29 s per epoch of 2 000 random 7×7×1280 maps,
# measured once on a loaded machine; not a bench/ script). With a 10× learning rate and early stopping on the held-out
# cross-entropy (below) the head stopped after 7 epochs (best 4) on 2 600 photos of 32 px, train 100 % / val 87.2 %
# (bench/bench_finetune_defaults.py: 6.2 minutes for `auditor finetune` from an empty cache).
SCHEDULES: dict[str, dict[str, float | int | str]] = {
    "fast": {"learning_rate": 1e-3, "epochs": 20, "patience": 3, "batch_size": 256, "stop_on": "val_cross_entropy"},
    "reference": {"learning_rate": 5e-6, "epochs": 100, "patience": 10, "batch_size": 32, "stop_on": "val_loss"},
}
# What early stopping watches. Keras' val_loss includes the L2 penalty of the 65M-parameter head, which keeps
# falling while the weights shrink long after the held-out predictions stopped improving, so a run monitoring it
# ran to its epoch cap (2 600 photos at 32 px: 20 of 20 epochs, best epoch 18, twice); val_cross_entropy is the
# held-out cross-entropy alone. The reference schedule keeps the seed run's own val_loss.
STOP_ON = ("val_cross_entropy", "val_loss")


@dataclass(frozen=True)
class FinetuneOptions:
    """The reference fine-tune (`audit --finetune`, `auditor finetune`): the reference run's architecture
    (frozen ImageNet base, Flatten, 2 × [Dense(1024, no bias, L2 0.003) → BN → ReLU → Dropout 0.5],
    Dense(C, no bias) → BN → softmax, Adam, categorical cross-entropy, class weights), trained on the
    `fast` schedule unless `schedule="reference"` (see SCHEDULES). `with_schedule` fills the schedule's
    values in for the fields not given."""

    schedule: str = "fast"
    epochs: int = 20  # the most epochs; early stopping on `stop_on` usually ends sooner
    patience: int = 3  # epochs without a lower `stop_on` before stopping (the best weights are restored)
    stop_on: str = "val_cross_entropy"  # what early stopping watches (STOP_ON; the reference schedule: val_loss)
    learning_rate: float = 1e-3
    batch_size: int = 256
    dense_units: int = 1024
    l2: float = 0.003
    dropout: float = 0.5
    class_weights: bool = True
    augment: bool = False  # random flips and crops; needs the base in the loop (slow)
    holdout_fraction: float = 0.2  # held-out share made (stratified, seeded) when the dataset has one split
    seed: int | None = None  # None: the audit's --seed, else 0
    counterfactual: bool = True  # retrain after the audit's fixes (gap_attribution)
    bootstrap: int = 2000  # resamples for the confidence intervals
    # The user's own training run, compared with the reference run: settings.resolve parses the log file (or,
    # from Python, the History that model.fit returned) into a finetune.history.History. The result cache
    # key reads this field's repr, so the run enters it by its values, never by file name or object
    # identity. Not hashed: a History is a mutable dataclass.
    history: Path | History | None = field(default=None, hash=False)

    @classmethod
    def with_schedule(cls, schedule: str = "fast", **fields) -> "FinetuneOptions":
        _one_of("finetune.schedule", schedule, tuple(SCHEDULES))
        return cls(schedule=schedule, **{**SCHEDULES[schedule], **fields})

    def __post_init__(self) -> None:
        _one_of("finetune.schedule", self.schedule, tuple(SCHEDULES))
        _one_of("finetune.stop_on", self.stop_on, STOP_ON)
        _within("finetune.epochs", self.epochs, 1, 100_000)
        _within("finetune.patience", self.patience, 0, 100_000)
        _within("finetune.learning_rate", self.learning_rate, 0.0, 10.0, open_interval=True)
        _within("finetune.batch_size", self.batch_size, 1, 65_536)
        _within("finetune.dense_units", self.dense_units, 1, 65_536)
        _within("finetune.l2", self.l2, 0.0, 100.0)
        _within("finetune.dropout", self.dropout, 0.0, 0.99)
        _within("finetune.holdout_fraction", self.holdout_fraction, 0.0, 1.0, open_interval=True)
        _within("finetune.bootstrap", self.bootstrap, 100, 1_000_000)
        if self.seed is not None:
            _within("finetune.seed", self.seed, 0, MAX_SEED)


@dataclass(frozen=True)
class AuditConfig:
    # What to audit
    layout: str = "auto"
    manifest: Path | None = None
    validation_split: float | None = None
    seed: int | None = None
    split_style: str = "keras-dataset"
    source_depth: int = 0  # > 0: an image's source is the first N folders below its class folder (0 = none)
    allow_outside_root: bool = False  # read links and manifest rows that lead outside the dataset folder
    # How to embed
    backbone: str = "auto"
    weights: str | None = None  # None = the backbone's default; "none" = random (tests only); else a path
    batch_size: int | None = None  # None = for the device: 32 on CPUs, 256 on GPUs (engines/device.py)
    precision: str = "auto"  # auto = for the device (engines/device.py)
    offline: bool = False
    workers: int = field(default_factory=default_workers)  # decoding threads or processes (engines/local.py)
    engine: str = "local"  # where the decode-and-embed map runs: local threads, or Ray Data (a cluster)
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
    min_cosine: float | None = None  # raw-cosine embedding threshold; None = scaled cosine, calibrated on the dataset
    min_correlation: float | None = None  # aligned pixel-correlation threshold; None = calibrated on the dataset
    calibration_images: int | None = None  # images copied (5 copies each) to measure recall and false matches;
    # None: similarity.calibration.default_sample_images (300 for datasets of up to 2 000 images, else 100)
    embedding_input_size: int | None = None  # backbone input side in px; None = from the image sizes (small images: smaller)
    max_group_size: int = 200
    # Label issues, outliers, image quality
    label_folds: int = 5  # cross-validation folds of the label probe
    label_neighbours: int = 10  # k of the k-NN label agreement
    # Below this accuracy (against the true labels, as the noise model expects it) the label probe's noise
    # estimate is not supported: no accuracy ceiling, no strong evidence, nothing attributed to mislabels
    label_min_probe_accuracy: float = 0.80
    outlier_neighbours: int = 5  # k of the k-NN isolation score
    # Robust z-score of isolation above which an image is an outlier; None = from the dataset size:
    # what the most isolated of n clean images exceeds with 5 % probability (Bonferroni), at least 3.5
    max_outlier_z: float | None = None
    max_quality_z: float = 3.5  # robust z-score beyond which an image property is unusual for the dataset
    # The reference fine-tune and gap attribution: None = not requested (both checks are skipped)
    finetune: FinetuneOptions | None = None
    # The gate
    policy: Policy = field(default_factory=Policy)

    def __post_init__(self) -> None:
        _one_of("backbone", self.backbone, BACKBONES)
        _one_of("layout", self.layout, LAYOUTS)
        _one_of("split_style", self.split_style, SPLIT_STYLES)
        _one_of("precision", self.precision, PRECISIONS)
        _one_of("engine", self.engine, ENGINES)
        if self.finetune is not None and not isinstance(self.finetune, FinetuneOptions):
            raise ConfigError(f"finetune must be FinetuneOptions or None; got {self.finetune!r}",
                              "Use finetune = true or a [finetune] table in a settings file, or --finetune.")
        if self.validation_split is not None:
            _within("validation_split", self.validation_split, 0.0, 1.0, open_interval=True)
            if self.manifest is not None:
                raise ConfigError(
                    "validation_split cannot be combined with a manifest",
                    "A manifest already says which split each image is in.",
                )
        if self.seed is not None:
            _within("seed", self.seed, 0, MAX_SEED)
        _within("source_depth", self.source_depth, 0, 64)
        if self.source_depth and self.manifest is not None:
            raise ConfigError(
                "source_depth cannot be combined with a manifest",
                "Put each image's source in the manifest's source column instead.",
            )
        if self.batch_size is not None:
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
        if self.min_correlation is not None and not LOWEST_MIN_CORRELATION <= self.min_correlation <= 1.0:
            raise ConfigError(
                f"min_correlation must be in [{LOWEST_MIN_CORRELATION}, 1.0]; got {self.min_correlation!r}",
                f"Below {LOWEST_MIN_CORRELATION} the pixel tier's scores are only a coarse screen's (pairs under "
                f"it are not compared at full size); leave min_correlation unset to have it chosen on the dataset.")
        if self.embedding_input_size is not None:
            _within("embedding_input_size", self.embedding_input_size, 32, 1024)
        if self.calibration_images is not None:
            _within("calibration_images", self.calibration_images, 0, 10_000)
        _within("max_group_size", self.max_group_size, 2, 10**6)
        _within("label_folds", self.label_folds, 2, 50)
        _within("label_neighbours", self.label_neighbours, 1, 1000)
        _within("label_min_probe_accuracy", self.label_min_probe_accuracy, 0.0, 1.0)
        _within("outlier_neighbours", self.outlier_neighbours, 1, 1000)
        if self.max_outlier_z is not None:
            _within("max_outlier_z", self.max_outlier_z, 1.0, 100.0)
        _within("max_quality_z", self.max_quality_z, 1.0, 100.0)
        p = self.policy
        _within("policy.leakage_max_percent", p.leakage_max_percent, 0.0, 100.0)
        _within("policy.label_conflicts_max", p.label_conflicts_max, 0, 10**9)
        _within("policy.exact_duplicates_max_percent", p.exact_duplicates_max_percent, 0.0, 100.0)
        _within("policy.near_duplicates_max_percent", p.near_duplicates_max_percent, 0.0, 100.0)
        _within("policy.integrity_max_findings", p.integrity_max_findings, 0, 10**9)
        _within("policy.max_imbalance_ratio", p.max_imbalance_ratio, 1.0, 10**9)
        _within("policy.alpha", p.alpha, 0.0, 1.0, open_interval=True)
        _within("policy.min_cramers_v", p.min_cramers_v, 0.0, 1.0)
        _within("policy.min_domain_auc", p.min_domain_auc, 0.5, 1.0)
        _within("policy.min_drift_effect", p.min_drift_effect, 0.0, 100.0)
        _within("policy.min_shortcut_lift", p.min_shortcut_lift, 0.0, 1.0)
        _within("policy.label_issues_max_percent", p.label_issues_max_percent, 0.0, 100.0)
        _within("policy.outliers_max_percent", p.outliers_max_percent, 0.0, 100.0)
        _within("policy.image_quality_max_percent", p.image_quality_max_percent, 0.0, 100.0)
        for check_id, mapping in p.statuses.items():
            for outcome, status in mapping.items():
                _one_of(f"policy.{check_id}.on_{outcome}", outcome, GATE_STATUSES)
                _one_of(f"policy.{check_id}.on_{outcome}", status, GATE_STATUSES)

    def replace(self, **changes: Any) -> "AuditConfig":
        return dataclasses.replace(self, **changes)


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {value!r}", f"Set {key} to one of those.")


# The pixel tier compares thumbnails at full size only where a coarse 16×16 search reaches pixels.SCREEN (0.70); a
# threshold must sit above it with a margin (measured: of 103 790 real evaluations under 0.70 coarse, one reached
# 0.806 at full size) for the scores it reads to be full-size ones. The chosen thresholds start at 0.80.
LOWEST_MIN_CORRELATION = 0.75

# Seeds go to NumPy, scikit-learn (random_state: below 2³²) and Keras, some offset by a few thousand per retry: a
# negative one made NumPy raise mid-audit.
MAX_SEED = 2**31 - 1


def _within(key: str, value: float, low: float, high: float, open_interval: bool = False) -> None:
    ok = (low < value < high) if open_interval else (low <= value <= high)
    if not ok:
        bracket = f"({low}, {high})" if open_interval else f"[{low}, {high}]"
        raise ConfigError(f"{key} must be in {bracket}; got {value!r}", f"Choose a value for {key} in {bracket}.")
