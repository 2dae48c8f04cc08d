"""Command line: parse flags → run → render → exit code. No computation here.

Exit codes: 0 no check failed · 1 a check failed under the policy · 2 usage, dataset or internal error.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from auditor.config import AuditConfig
from auditor.errors import AuditorError, ConfigError

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
FORMATS = ("terminal", "json", "html", "markdown", "junit")

app = typer.Typer(
    name="auditor",
    help="Audit an image-classification dataset before training on it.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class Backbone(str, Enum):
    auto = "auto"
    resnet50 = "resnet50"
    efficientnet_lite0 = "efficientnet-lite0"


class Layout(str, Enum):
    auto = "auto"
    splits = "splits"
    classes = "classes"


class SplitStyle(str, Enum):
    keras_dataset = "keras-dataset"
    keras_generator = "keras-generator"


class Precision(str, Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"


# Options shared by every command that reads a dataset ------------------------------------------
DatasetArg = typer.Argument(..., help="Dataset folder: DIR/<split>/<class>/… or DIR/<class>/…", show_default=False)
ManifestOpt = typer.Option(None, "--manifest", help="CSV with columns path,label,split[,source]; paths relative to DIR.")
LayoutOpt = typer.Option(Layout.auto, "--layout", help="Force the folder layout instead of detecting it.")
ValSplitOpt = typer.Option(None, "--validation-split", help="Reproduce Keras' split of a folder of class folders (0–1).")
SeedOpt = typer.Option(None, "--seed", help="The seed given to Keras (and used for auditor's own sampling).")
SplitStyleOpt = typer.Option(SplitStyle.keras_dataset, "--split-style",
                             help="keras-dataset: image_dataset_from_directory; keras-generator: ImageDataGenerator.")
BackboneOpt = typer.Option(Backbone.auto, "--backbone", help="auto: ResNet50 if its ImageNet weights are available, else EfficientNet-Lite0.")
WeightsOpt = typer.Option(None, "--weights", help="Weights file for the backbone, or 'none' for random weights (tests only).")
OfflineOpt = typer.Option(False, "--offline", help="Never try to download weights.")
BatchOpt = typer.Option(32, "--batch-size", min=1, max=4096, help="Images per backbone batch.")
PrecisionOpt = typer.Option(Precision.auto, "--precision", help="auto: bfloat16 on CPUs with native bf16, else float32.")
CacheDirOpt = typer.Option(None, "--cache-dir", help="Cache folder (default ~/.cache/auditor or $AUDITOR_CACHE_DIR).")
NoCacheOpt = typer.Option(False, "--no-cache", help="Keep nothing between runs.")
WorkersOpt = typer.Option(2, "--workers", min=1, max=64, help="Decoding threads.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")

# The reference fine-tune (defaults live in config.FinetuneOptions: the reference run's) -------------
FinetuneOpt = typer.Option(False, "--finetune", help="Train the reference head on the frozen base and attribute the "
                                                   "train/validation gap to data problems (checks reference_finetune, gap_attribution).")
EpochsOpt = typer.Option(None, "--epochs", min=1, help="Fine-tune: most epochs (default 100; early stopping usually ends sooner).")
PatienceOpt = typer.Option(None, "--patience", min=0, help="Fine-tune: epochs without a lower val_loss before stopping (default 10).")
LearningRateOpt = typer.Option(None, "--learning-rate", help="Fine-tune: Adam learning rate (default 5e-6, the reference's).")
TrainBatchOpt = typer.Option(None, "--train-batch-size", min=1, help="Fine-tune: images per training batch (default 32).")
DenseUnitsOpt = typer.Option(None, "--dense-units", min=1, help="Fine-tune: units of each hidden Dense layer (default 1024).")
L2Opt = typer.Option(None, "--l2", help="Fine-tune: L2 factor on the hidden Dense kernels (default 0.003).")
DropoutOpt = typer.Option(None, "--dropout", help="Fine-tune: dropout rate after each hidden layer (default 0.5).")
ClassWeightsOpt = typer.Option(None, "--class-weights/--no-class-weights", help="Fine-tune: balanced class weights (default on).")
AugmentOpt = typer.Option(None, "--augment/--no-augment", help="Fine-tune: random flips and crops; runs the base in the loop (slow; default off).")
HoldoutOpt = typer.Option(None, "--holdout-fraction", help="Fine-tune: held-out share made when the dataset has one split (default 0.2).")
FinetuneSeedOpt = typer.Option(None, "--finetune-seed", help="Fine-tune: seed (default --seed, else 0).")
CounterfactualOpt = typer.Option(None, "--counterfactual/--no-counterfactual", help="Fine-tune: retrain after the audit's fixes (default on).")
BootstrapOpt = typer.Option(None, "--bootstrap", help="Fine-tune: bootstrap resamples for the 95 % intervals (default 2000).")
HistoryOpt = typer.Option(None, "--history", help="Your own training log (Keras fit output, CSVLogger file or JSON of "
                                                  "History.history), compared with the reference run.")


def _finetune_options(enabled: bool, **values):
    """FinetuneOptions from the fine-tune flags, or None when the fine-tune is not requested."""
    from auditor.config import FinetuneOptions
    from auditor.errors import ConfigError

    given = {k: v for k, v in values.items() if v is not None}
    if not enabled:
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise ConfigError(f"{flags} only apply to the fine-tune", "Add --finetune, or use `auditor finetune DIR`.")
        return None
    if "history" in given:
        given["history"] = Path(given["history"]).expanduser()
        if not given["history"].is_file():  # say so now, not after the embedding and the training
            raise ConfigError(f"history file {str(given['history'])!r} does not exist",
                              "Pass the log Keras printed during fit, a CSVLogger file or a JSON dump of History.history.")
    return FinetuneOptions(**given)


def _config(_file: dict | None = None, _explicit: set[str] | None = None, **values) -> AuditConfig:
    """Build the frozen config from CLI values, dropping those the user left unset.
    `_file`: values from a settings file; a flag left at its default does not override them."""
    cleaned = dict(_file or {})
    for key, value in values.items():
        if value is None:
            continue
        if _explicit is not None and key not in _explicit and key in cleaned:
            continue
        if isinstance(value, Enum):
            value = value.value
        cleaned[key] = value
    if cleaned.pop("no_cache", False):
        cleaned["use_cache"] = False
    if "cache_dir" in cleaned:
        cleaned["cache_dir"] = Path(cleaned["cache_dir"]).expanduser()
    if "manifest" in cleaned:
        cleaned["manifest"] = Path(cleaned["manifest"]).expanduser()
    return AuditConfig(**cleaned)


def _progress(quiet: bool):
    from auditor.progress import SilentProgress

    if quiet:
        return SilentProgress()
    from auditor.rich_progress import RichProgress

    return RichProgress()


def _write_reports(report, out: Path, formats: list[str], ctx=None) -> list[Path]:
    from auditor.atomic import atomic_write_text
    from auditor.formats.json_report import render_json

    written = []
    if "json" in formats:
        destination = out / "report.json"
        atomic_write_text(destination, render_json(report))
        written.append(destination)
    if "markdown" in formats:
        from auditor.formats.markdown import render_markdown

        atomic_write_text(out / "report.md", render_markdown(report))
        written.append(out / "report.md")
    if "junit" in formats:
        from auditor.formats.junit import render_junit

        atomic_write_text(out / "report.junit.xml", render_junit(report))
        written.append(out / "report.junit.xml")
    if "html" in formats:
        from auditor.formats.html import render_html
        from auditor.visuals import Thumbnails, embedding_projection, property_samples, thumbnails_for

        thumbnails = thumbnails_for(report, ctx) if ctx is not None else Thumbnails()
        projection = embedding_projection(ctx) if ctx is not None else None
        properties = property_samples(ctx) if ctx is not None else None
        atomic_write_text(out / "report.html", render_html(report, thumbnails, projection, properties))
        written.append(out / "report.html")
    return written


def _explicit_flags(ctx: Optional[typer.Context]) -> Optional[set[str]]:
    """Names of the options given on the command line (None: treat every value as given)."""
    if ctx is None:
        return None
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}
    return {name for name, source in sources.items()
            if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")}


def _default_out(dataset_dir: Path, manifest: Optional[Path]) -> Path:
    name = (manifest.stem if manifest else Path(dataset_dir).expanduser().resolve().name) or "dataset"
    return Path("reports") / name


def _parse_formats(text: str) -> list[str]:
    from auditor.errors import ConfigError

    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"unknown format(s): {', '.join(unknown) or '(none)'}", f"Use a comma list of {', '.join(FORMATS)}.")
    return formats


@app.command("audit")
def audit_command(
    ctx: typer.Context,
    dataset_dir: Path = DatasetArg,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder (default reports/<dataset-name>/)."),
    format: str = typer.Option("terminal,json", "--format",
                               help="Comma list of: terminal, json, html, markdown, junit (files go to --out)."),
    config_file: Optional[Path] = typer.Option(None, "--config",
                                               help="Settings file (auditor.toml or pyproject.toml with \\[tool.auditor]); "
                                                    "default: the nearest one at or above DIR."),
    policy: Optional[list[str]] = typer.Option(None, "--policy",
                                               help="Override one policy key, e.g. --policy leakage.max_percent=1 "
                                                    "or --policy near_duplicates.on_warn=fail (repeatable)."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="Findings recorded in this file are accepted; only new ones can fail."),
    update_baseline: bool = typer.Option(False, "--update-baseline", help="Write every current finding to the --baseline file."),
    against: Optional[Path] = typer.Option(None, "--against",
                                           help="Audit DIR as incoming images merged into this existing dataset (folder or manifest)."),
    exit_zero: bool = typer.Option(False, "--exit-zero", help="Exit 0 even when a check fails (errors still exit 2)."),
    checks: Optional[str] = typer.Option(None, "--checks", help="Comma list of check ids to run (default: all)."),
    manifest: Optional[Path] = ManifestOpt,
    layout: Layout = LayoutOpt,
    validation_split: Optional[float] = ValSplitOpt,
    seed: Optional[int] = SeedOpt,
    split_style: SplitStyle = SplitStyleOpt,
    source_depth: Optional[int] = typer.Option(
        None, "--source-depth", min=0, max=64,
        help="Each image's source is the first N folders below its class folder (for the shortcuts check)."),
    backbone: Backbone = BackboneOpt,
    weights: Optional[str] = WeightsOpt,
    offline: bool = OfflineOpt,
    batch_size: int = BatchOpt,
    precision: Precision = PrecisionOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    no_cache: bool = NoCacheOpt,
    workers: int = WorkersOpt,
    min_cosine: Optional[float] = typer.Option(None, "--min-cosine", help="Embedding-tier threshold (default: calibrated on the dataset)."),
    max_phash_distance: Optional[int] = typer.Option(None, "--max-phash-distance", help="Hash tier: pHash Hamming distance (default 6)."),
    max_dhash_distance: Optional[int] = typer.Option(None, "--max-dhash-distance", help="Hash tier: dHash Hamming distance (default 10)."),
    calibration_images: Optional[int] = typer.Option(None, "--calibration-images", help="Images transformed to measure recall and precision (default 40)."),
    quiet: bool = QuietOpt,
    finetune: bool = FinetuneOpt,
    epochs: Optional[int] = EpochsOpt,
    patience: Optional[int] = PatienceOpt,
    learning_rate: Optional[float] = LearningRateOpt,
    train_batch_size: Optional[int] = TrainBatchOpt,
    dense_units: Optional[int] = DenseUnitsOpt,
    l2: Optional[float] = L2Opt,
    dropout: Optional[float] = DropoutOpt,
    class_weights: Optional[bool] = ClassWeightsOpt,
    augment: Optional[bool] = AugmentOpt,
    holdout_fraction: Optional[float] = HoldoutOpt,
    finetune_seed: Optional[int] = FinetuneSeedOpt,
    counterfactual: Optional[bool] = CounterfactualOpt,
    bootstrap: Optional[int] = BootstrapOpt,
    history: Optional[Path] = HistoryOpt,
) -> None:
    """Run the whole audit: terminal report on stdout, JSON report in --out."""

    def work() -> int:
        from auditor.formats.terminal import build_renderable
        from auditor.runner import audit

        from auditor.policy_file import load_settings

        formats = _parse_formats(format)
        settings = load_settings(dataset_dir, config_file, policy)
        config = _config(_file=settings.values, _explicit=_explicit_flags(ctx), manifest=manifest, layout=layout, validation_split=validation_split, seed=seed,
                         split_style=split_style, source_depth=source_depth, backbone=backbone, weights=weights, offline=offline,
                         batch_size=batch_size, precision=precision, cache_dir=cache_dir, no_cache=no_cache,
                         workers=workers, min_cosine=min_cosine, max_phash_distance=max_phash_distance,
                         max_dhash_distance=max_dhash_distance, calibration_images=calibration_images,
                         finetune=_finetune_options(
                             finetune, epochs=epochs, patience=patience, learning_rate=learning_rate,
                             batch_size=train_batch_size, dense_units=dense_units, l2=l2, dropout=dropout,
                             class_weights=class_weights, augment=augment, holdout_fraction=holdout_fraction,
                             seed=finetune_seed, counterfactual=counterfactual, bootstrap=bootstrap, history=history))
        check_ids = [c.strip() for c in checks.split(",") if c.strip()] if checks else None
        baseline_path = baseline or settings.baseline
        if update_baseline and baseline_path is None:
            raise ConfigError("--update-baseline needs a file", "Pass --baseline FILE (or set baseline in [tool.auditor]).")
        baseline_ids = None
        if baseline_path is not None and not update_baseline:
            from auditor.baseline import load_baseline

            baseline_ids = load_baseline(baseline_path)
        report, audit_ctx = audit(dataset_dir, config, _progress(quiet), check_ids, against=against,
                                  baseline_ids=baseline_ids)
        if update_baseline:
            from auditor.baseline import accept_findings, write_baseline

            write_baseline(report, baseline_path)
            recorded = {f.id for c in report.checks for f in c.findings}
            accept_findings(report.checks, lambda f: "baseline" if f.id in recorded else None)
            _stderr(f"baseline written to {baseline_path} ({len(recorded)} findings)")
        if "terminal" in formats:
            _stdout_console().print(build_renderable(report))
        for path in _write_reports(report, out or _default_out(dataset_dir, manifest), formats, audit_ctx):
            _stderr(f"report written to {path}")
        if report.failed and not exit_zero:
            return EXIT_FAILED
        return EXIT_ERROR if report.errored else EXIT_OK

    raise typer.Exit(_guarded(work))


@app.command("embed")
def embed_command(
    dataset_dir: Path = DatasetArg,
    manifest: Optional[Path] = ManifestOpt,
    layout: Layout = LayoutOpt,
    backbone: Backbone = BackboneOpt,
    weights: Optional[str] = WeightsOpt,
    offline: bool = OfflineOpt,
    batch_size: int = BatchOpt,
    precision: Precision = PrecisionOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    workers: int = WorkersOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Hash, scan and embed every image into the cache (warms it for later audits)."""

    def work() -> int:
        from auditor.runner import prepare

        config = _config(manifest=manifest, layout=layout, backbone=backbone, weights=weights, offline=offline,
                         batch_size=batch_size, precision=precision, cache_dir=cache_dir, workers=workers)
        ctx = prepare(dataset_dir, config, _progress(quiet))
        stats = ctx.encoded.stats
        print(
            f"{len(ctx.records)} files, {int(stats['unique_images'])} unique contents; "
            f"embeddings: {int(stats['embeddings_cached'])} cached, {int(stats['embeddings_computed'])} computed "
            f"with {ctx.backbone.name} ({ctx.backbone.weights}); cache: {config.cache_dir}"
        )
        return EXIT_OK

    raise typer.Exit(_guarded(work))


@app.command("duplicates")
def duplicates_command(
    dataset_dir: Path = DatasetArg,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder (default reports/<dataset-name>/)."),
    exit_zero: bool = typer.Option(False, "--exit-zero", help="Exit 0 even when a check fails."),
    manifest: Optional[Path] = ManifestOpt,
    layout: Layout = LayoutOpt,
    validation_split: Optional[float] = ValSplitOpt,
    seed: Optional[int] = SeedOpt,
    split_style: SplitStyle = SplitStyleOpt,
    backbone: Backbone = BackboneOpt,
    weights: Optional[str] = WeightsOpt,
    offline: bool = OfflineOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    min_cosine: Optional[float] = typer.Option(None, "--min-cosine", help="Embedding-tier threshold (default: calibrated)."),
    quiet: bool = QuietOpt,
) -> None:
    """Only the duplicate checks: exact_duplicates, near_duplicates, leakage, label_conflicts."""
    args = dict(ctx=None, config_file=None, policy=None, baseline=None, update_baseline=False, against=None,
                dataset_dir=dataset_dir, out=out, format="terminal,json", exit_zero=exit_zero,
                checks="exact_duplicates,near_duplicates,leakage,label_conflicts", manifest=manifest, layout=layout,
                validation_split=validation_split, seed=seed, split_style=split_style, source_depth=None,
                backbone=backbone,
                weights=weights, offline=offline, batch_size=32, precision=Precision.auto, cache_dir=cache_dir,
                no_cache=False, workers=2, min_cosine=min_cosine, max_phash_distance=None, max_dhash_distance=None,
                calibration_images=None, quiet=quiet, **_NO_FINETUNE)
    audit_command(**args)


_NO_FINETUNE = dict(finetune=False, epochs=None, patience=None, learning_rate=None, train_batch_size=None,
                    dense_units=None, l2=None, dropout=None, class_weights=None, augment=None, holdout_fraction=None,
                    finetune_seed=None, counterfactual=None, bootstrap=None, history=None)


@app.command("finetune")
def finetune_command(
    dataset_dir: Path = DatasetArg,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder (default reports/<dataset-name>/)."),
    format: str = typer.Option("terminal,json", "--format", help="Comma list of report formats."),
    exit_zero: bool = typer.Option(False, "--exit-zero", help="Exit 0 even when a check fails."),
    manifest: Optional[Path] = ManifestOpt,
    layout: Layout = LayoutOpt,
    validation_split: Optional[float] = ValSplitOpt,
    seed: Optional[int] = SeedOpt,
    split_style: SplitStyle = SplitStyleOpt,
    backbone: Backbone = BackboneOpt,
    weights: Optional[str] = WeightsOpt,
    offline: bool = OfflineOpt,
    batch_size: int = BatchOpt,
    precision: Precision = PrecisionOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    no_cache: bool = NoCacheOpt,
    workers: int = WorkersOpt,
    min_cosine: Optional[float] = typer.Option(None, "--min-cosine", help="Embedding-tier threshold (default: calibrated)."),
    calibration_images: Optional[int] = typer.Option(None, "--calibration-images", help="Images transformed to measure recall and precision (default 40)."),
    quiet: bool = QuietOpt,
    epochs: Optional[int] = EpochsOpt,
    patience: Optional[int] = PatienceOpt,
    learning_rate: Optional[float] = LearningRateOpt,
    train_batch_size: Optional[int] = TrainBatchOpt,
    dense_units: Optional[int] = DenseUnitsOpt,
    l2: Optional[float] = L2Opt,
    dropout: Optional[float] = DropoutOpt,
    class_weights: Optional[bool] = ClassWeightsOpt,
    augment: Optional[bool] = AugmentOpt,
    holdout_fraction: Optional[float] = HoldoutOpt,
    finetune_seed: Optional[int] = FinetuneSeedOpt,
    counterfactual: Optional[bool] = CounterfactualOpt,
    bootstrap: Optional[int] = BootstrapOpt,
    history: Optional[Path] = HistoryOpt,
) -> None:
    """The reference fine-tune and the gap attribution only (with the leakage, conflict and shift evidence they read)."""
    from auditor.checks import CHECKS

    wanted = [c for c in ("leakage", "label_conflicts", "split_shift", "reference_finetune", "gap_attribution")
              if c in CHECKS]
    args = dict(ctx=None, config_file=None, policy=None, baseline=None, update_baseline=False, against=None,
                dataset_dir=dataset_dir, out=out, format=format, exit_zero=exit_zero, checks=",".join(wanted),
                manifest=manifest, layout=layout, validation_split=validation_split, seed=seed,
                split_style=split_style, source_depth=None, backbone=backbone, weights=weights, offline=offline,
                batch_size=batch_size, precision=precision, cache_dir=cache_dir, no_cache=no_cache, workers=workers,
                min_cosine=min_cosine, max_phash_distance=None, max_dhash_distance=None,
                calibration_images=calibration_images, quiet=quiet, finetune=True, epochs=epochs, patience=patience, learning_rate=learning_rate,
                train_batch_size=train_batch_size, dense_units=dense_units, l2=l2, dropout=dropout,
                class_weights=class_weights, augment=augment, holdout_fraction=holdout_fraction,
                finetune_seed=finetune_seed, counterfactual=counterfactual, bootstrap=bootstrap, history=history)
    audit_command(**args)


@app.command("manifest")
def manifest_command(
    dataset_dir: Path = DatasetArg,
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the CSV."),
    layout: Layout = LayoutOpt,
    validation_split: Optional[float] = ValSplitOpt,
    seed: Optional[int] = SeedOpt,
    split_style: SplitStyle = SplitStyleOpt,
) -> None:
    """Write the resolved path,label,split table (for example the exact split Keras makes)."""

    def work() -> int:
        from auditor.dataset import load_dataset, write_manifest

        config = _config(layout=layout, validation_split=validation_split, seed=seed, split_style=split_style)
        index = load_dataset(dataset_dir, config)
        write_manifest(index, output)
        counts = ", ".join(f"{s} {info['images']}" for s, info in index.summary()["splits"].items())
        _stderr(f"wrote {len(index.records)} rows ({counts}) to {output}")
        return EXIT_OK

    raise typer.Exit(_guarded(work))


@app.command("split")
def split_command(
    ctx: typer.Context,
    dataset_dir: Path = DatasetArg,
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the CSV (path,label,split,group,reason)."),
    fractions: Optional[str] = typer.Option(None, "--fractions",
                                            help="New splits and their shares, e.g. train=0.8,val=0.2 or "
                                                 "train=0.7,val=0.2,test=0.1 (default: --keep-existing when the "
                                                 "dataset has splits, else train=0.8,val=0.2)."),
    keep_existing: bool = typer.Option(False, "--keep-existing",
                                       help="Keep today's splits; move as few images as possible to remove every leak."),
    group_by: Optional[str] = typer.Option(None, "--group-by",
                                           help="Also keep together images sharing this: 'source' or a manifest column."),
    dedupe: bool = typer.Option(False, "--dedupe", help="Keep one image per duplicate group (in train); exclude the copies."),
    drop_suspect_labels: bool = typer.Option(False, "--drop-suspect-labels",
                                             help="Exclude images label_issues flags with strong evidence."),
    materialize: Optional[Path] = typer.Option(None, "--materialize",
                                               help="Lay the split out as DEST/<split>/<class>/… (hard links; copies "
                                                    "where links are impossible). DEST must be new or empty."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a DEST an earlier --materialize wrote."),
    copy: bool = typer.Option(False, "--copy", help="Copy files into DEST instead of hard-linking them."),
    format: str = typer.Option("terminal", "--format",
                               help="Comma list of: terminal, json, markdown, html (files beside the CSV, same name)."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="Settings file (default: the nearest one at or above DIR)."),
    manifest: Optional[Path] = ManifestOpt,
    layout: Layout = LayoutOpt,
    validation_split: Optional[float] = ValSplitOpt,
    seed: Optional[int] = SeedOpt,
    split_style: SplitStyle = SplitStyleOpt,
    source_depth: Optional[int] = typer.Option(None, "--source-depth", min=0, max=64,
                                               help="Each image's source is the first N folders below its class folder."),
    backbone: Backbone = BackboneOpt,
    weights: Optional[str] = WeightsOpt,
    offline: bool = OfflineOpt,
    batch_size: int = BatchOpt,
    precision: Precision = PrecisionOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    no_cache: bool = NoCacheOpt,
    workers: int = WorkersOpt,
    min_cosine: Optional[float] = typer.Option(None, "--min-cosine", help="Embedding-tier threshold (default: calibrated)."),
    max_phash_distance: Optional[int] = typer.Option(None, "--max-phash-distance", help="Hash tier: pHash distance (default 6)."),
    max_dhash_distance: Optional[int] = typer.Option(None, "--max-dhash-distance", help="Hash tier: dHash distance (default 10)."),
    calibration_images: Optional[int] = typer.Option(None, "--calibration-images", help="Images transformed to calibrate (default 40)."),
    quiet: bool = QuietOpt,
) -> None:
    """Write a leak-free split: every duplicate group in one split, stratified by class, conflicts and broken
    files excluded with a reason (nothing in DIR is changed)."""

    def work() -> int:
        from auditor.fix.command import SplitOptions, run_split
        from auditor.fix.items import parse_fractions
        from auditor.policy_file import load_settings

        options = SplitOptions(
            output=output, fractions=parse_fractions(fractions) if fractions else None, keep_existing=keep_existing,
            seed=seed, group_by=group_by, dedupe=dedupe, drop_suspect_labels=drop_suspect_labels,
            materialize=materialize, overwrite=overwrite, copy=copy,
            formats=tuple(f.strip().lower() for f in format.split(",") if f.strip()))
        settings = load_settings(dataset_dir, config_file, None)
        config = _config(_file=settings.values, _explicit=_explicit_flags(ctx), manifest=manifest, layout=layout,
                         validation_split=validation_split, seed=seed, split_style=split_style,
                         source_depth=source_depth, backbone=backbone, weights=weights, offline=offline,
                         batch_size=batch_size, precision=precision, cache_dir=cache_dir, no_cache=no_cache,
                         workers=workers, min_cosine=min_cosine, max_phash_distance=max_phash_distance,
                         max_dhash_distance=max_dhash_distance, calibration_images=calibration_images)
        outcome = run_split(dataset_dir, config, options, _progress(quiet))
        if outcome.text:
            sys.stdout.write(outcome.text)
        for path in outcome.written:
            _stderr(f"written: {path}")
        return outcome.exit_code

    raise typer.Exit(_guarded(work))


def _stdout_console():
    from rich.console import Console

    return Console(highlight=False)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _guarded(work) -> int:
    """Run a command; turn errors into one line plus a tip and exit code 2 (a traceback only with AUDITOR_DEBUG=1)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return work()
    except AuditorError as exc:
        _stderr(f"error: {exc.message}")
        if exc.tip:
            _stderr(f"Tip: {exc.tip}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _stderr("interrupted: finished work is kept in the cache; run again to resume")
        return EXIT_ERROR
    except Exception as exc:  # the last resort: never a traceback for users
        if os.environ.get("AUDITOR_DEBUG"):
            raise
        _stderr(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        _stderr("Tip: run again with AUDITOR_DEBUG=1 for the traceback, and report it.")
        return EXIT_ERROR


def app_main() -> None:
    """`auditor …` entry point."""
    app()


def audit_main() -> None:
    """`audit DIR …` entry point: the audit command on its own."""
    audit_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    audit_app.command()(audit_command)
    audit_app()
