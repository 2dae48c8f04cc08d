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
from auditor.errors import AuditorError

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
FORMATS = ("terminal", "json")

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


def _config(**values) -> AuditConfig:
    """Build the frozen config from CLI values, dropping those the user left unset."""
    cleaned = {}
    for key, value in values.items():
        if value is None:
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


def _write_reports(report, out: Path, formats: list[str]) -> list[Path]:
    from auditor.atomic import atomic_write_text
    from auditor.formats.json_report import render_json

    written = []
    if "json" in formats:
        destination = out / "report.json"
        atomic_write_text(destination, render_json(report))
        written.append(destination)
    return written


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
    dataset_dir: Path = DatasetArg,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder (default reports/<dataset-name>/)."),
    format: str = typer.Option("terminal,json", "--format", help="Comma list of: terminal, json."),
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
) -> None:
    """Run the whole audit: terminal report on stdout, JSON report in --out."""

    def work() -> int:
        from auditor.formats.terminal import build_renderable
        from auditor.runner import audit

        formats = _parse_formats(format)
        config = _config(manifest=manifest, layout=layout, validation_split=validation_split, seed=seed,
                         split_style=split_style, source_depth=source_depth, backbone=backbone, weights=weights, offline=offline,
                         batch_size=batch_size, precision=precision, cache_dir=cache_dir, no_cache=no_cache,
                         workers=workers, min_cosine=min_cosine, max_phash_distance=max_phash_distance,
                         max_dhash_distance=max_dhash_distance, calibration_images=calibration_images)
        check_ids = [c.strip() for c in checks.split(",") if c.strip()] if checks else None
        report, _ctx = audit(dataset_dir, config, _progress(quiet), check_ids)
        if "terminal" in formats:
            _stdout_console().print(build_renderable(report))
        for path in _write_reports(report, out or _default_out(dataset_dir, manifest), formats):
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
    args = dict(dataset_dir=dataset_dir, out=out, format="terminal,json", exit_zero=exit_zero,
                checks="exact_duplicates,near_duplicates,leakage,label_conflicts", manifest=manifest, layout=layout,
                validation_split=validation_split, seed=seed, split_style=split_style, source_depth=None,
                backbone=backbone,
                weights=weights, offline=offline, batch_size=32, precision=Precision.auto, cache_dir=cache_dir,
                no_cache=False, workers=2, min_cosine=min_cosine, max_phash_distance=None, max_dhash_distance=None,
                calibration_images=None, quiet=quiet)
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
