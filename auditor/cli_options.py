"""Every command-line option, written once, in groups; each command picks the groups it takes.

Typer reads a command's options from its signature. Rather than typing the same forty parameters out
per command (and letting them drift apart), `takes(*groups)` gives a command function the signature of
the chosen groups and calls it with one `Flags` object: the values the user gave, and which of them
were given explicitly (so a flag left at its default never overrides the settings file).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

import typer


class BackboneChoice(str, Enum):
    auto = "auto"
    resnet50 = "resnet50"
    efficientnet_lite0 = "efficientnet-lite0"


class LayoutChoice(str, Enum):
    auto = "auto"
    splits = "splits"
    classes = "classes"


class SplitStyleChoice(str, Enum):
    keras_dataset = "keras-dataset"
    keras_generator = "keras-generator"


class EngineChoice(str, Enum):
    local = "local"
    ray = "ray"


class ScheduleChoice(str, Enum):
    fast = "fast"
    reference = "reference"


class PrecisionChoice(str, Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


@dataclass(frozen=True)
class Opt:
    """One option: its Python type and its typer declaration."""

    annotation: Any
    declaration: Any


GROUPS: dict[str, dict[str, Opt]] = {
    "dataset": {
        "manifest": Opt(Optional[Path], typer.Option(
            None, "--manifest", help="CSV with columns path,label,split[,source]; paths relative to DIR.")),
        "layout": Opt(LayoutChoice, typer.Option(LayoutChoice.auto, "--layout", help="Force the folder layout instead of detecting it.")),
        "validation_split": Opt(Optional[float], typer.Option(
            None, "--validation-split", help="Reproduce Keras' split of a folder of class folders (0–1).")),
        "seed": Opt(Optional[int], typer.Option(None, "--seed", help="The seed given to Keras (and used for auditor's own sampling).")),
        "split_style": Opt(SplitStyleChoice, typer.Option(
            SplitStyleChoice.keras_dataset, "--split-style",
            help="keras-dataset: image_dataset_from_directory; keras-generator: ImageDataGenerator.")),
    },
    "outside_root": {
        "allow_outside_root": Opt(bool, typer.Option(
            False, "--allow-outside-root", help="Also read links and manifest rows that lead outside DIR.")),
    },
    "sources": {
        "source_depth": Opt(Optional[int], typer.Option(
            None, "--source-depth", min=0, max=64,
            help="Each image's source is the first N folders below its class folder (for the shortcuts check).")),
    },
    "settings": {
        "config_file": Opt(Optional[Path], typer.Option(
            None, "--config", help="Settings file (auditor.toml or pyproject.toml with \\[tool.auditor]); "
                                   "default: the nearest one at or above DIR.")),
        "policy": Opt(Optional[list[str]], typer.Option(
            None, "--policy", help="Override one policy key, e.g. --policy leakage.max_percent=1 "
                                   "or --policy near_duplicates.on_warn=fail (repeatable).")),
    },
    "embedding": {
        "backbone": Opt(BackboneChoice, typer.Option(
            BackboneChoice.auto, "--backbone",
            help="auto: ResNet50 if its ImageNet weights are available, else EfficientNet-Lite0.")),
        "weights": Opt(Optional[str], typer.Option(
            None, "--weights", help="Weights file for the backbone, or 'none' for random weights (tests only).")),
        "offline": Opt(bool, typer.Option(False, "--offline", help="Never try to download weights.")),
        "batch_size": Opt(Optional[int], typer.Option(
            None, "--batch-size", min=1, max=4096, help="Images per backbone batch (default: 32 on CPUs, 256 on GPUs).")),
        "precision": Opt(PrecisionChoice, typer.Option(
            PrecisionChoice.auto, "--precision",
            help="auto: bfloat16 on GPUs that compute it (float16 on older ones) and on CPUs with AMX for it, else float32 (auto follows the precision the cache already holds the images in).")),
        "cache_dir": Opt(Optional[Path], typer.Option(
            None, "--cache-dir", help="Cache folder (default ~/.cache/auditor or $AUDITOR_CACHE_DIR).")),
        "no_cache": Opt(bool, typer.Option(False, "--no-cache", help="Keep nothing between runs.")),
        "workers": Opt(Optional[int], typer.Option(
            None, "--workers", min=1, max=64,
            help="Decoding workers (default: this machine's cores): threads, or processes when a GPU embeds.")),
        "engine": Opt(EngineChoice, typer.Option(
            EngineChoice.local, "--engine", help="Where decoding and embedding run: local threads, or ray "
                                                 "(Ray Data; RAY_ADDRESS selects a cluster; pip install auditor[ray]).")),
    },
    "duplicates": {
        "min_cosine": Opt(Optional[float], typer.Option(
            None, "--min-cosine", help="Embedding tier: a raw cosine threshold (default: a scaled cosine chosen on the dataset).")),
        "max_phash_distance": Opt(Optional[int], typer.Option(
            None, "--max-phash-distance", help="Hash tier: pHash Hamming distance (default 6).")),
        "max_dhash_distance": Opt(Optional[int], typer.Option(
            None, "--max-dhash-distance", help="Hash tier: dHash Hamming distance (default 10).")),
        "min_correlation": Opt(Optional[float], typer.Option(
            None, "--min-correlation", help="Pixel-tier threshold: aligned grey-thumbnail correlation (default: chosen on the dataset).")),
        "embedding_input_size": Opt(Optional[int], typer.Option(
            None, "--embedding-input-size", help="Backbone input side in px (default: 224; 96 for images of 64 px or less in datasets of more than 20 000 images).")),
        "calibration_images": Opt(Optional[int], typer.Option(
            None, "--calibration-images", help="Images copied (5 copies each) to measure recall and precision (default 300 for datasets of up to 2 000 images, else 100).")),
    },
    "finetune_switch": {
        "finetune": Opt(bool, typer.Option(
            False, "--finetune", help="Train the reference head on the frozen base and attribute the train/validation "
                                      "gap to data problems (checks reference_finetune, gap_attribution).")),
    },
    "finetune": {
        "finetune_schedule": Opt(Optional[ScheduleChoice], typer.Option(
            None, "--finetune-schedule", help="Fine-tune: fast (default; minutes on a laptop) or reference (the seed "
                                              "run's Adam 5e-6, 100 epochs, patience 10: much slower).")),
        "epochs": Opt(Optional[int], typer.Option(
            None, "--epochs", min=1, help="Fine-tune: most epochs (fast schedule 20, reference 100; early stopping usually ends sooner).")),
        "patience": Opt(Optional[int], typer.Option(
            None, "--patience", min=0, help="Fine-tune: epochs without improvement before stopping (fast 3, watching the held-out cross-entropy; reference 10, watching val_loss).")),
        "learning_rate": Opt(Optional[float], typer.Option(
            None, "--learning-rate", help="Fine-tune: Adam learning rate (fast 1e-3, reference 5e-6).")),
        "train_batch_size": Opt(Optional[int], typer.Option(
            None, "--train-batch-size", min=1, help="Fine-tune: images per training batch (fast schedule 256, reference 32).")),
        "dense_units": Opt(Optional[int], typer.Option(
            None, "--dense-units", min=1, help="Fine-tune: units of each hidden Dense layer (default 1024).")),
        "l2": Opt(Optional[float], typer.Option(None, "--l2", help="Fine-tune: L2 factor on the hidden Dense kernels (default 0.003).")),
        "dropout": Opt(Optional[float], typer.Option(
            None, "--dropout", help="Fine-tune: dropout rate after each hidden layer (default 0.5).")),
        "class_weights": Opt(Optional[bool], typer.Option(
            None, "--class-weights/--no-class-weights", help="Fine-tune: balanced class weights (default on).")),
        "augment": Opt(Optional[bool], typer.Option(
            None, "--augment/--no-augment", help="Fine-tune: random flips and crops; runs the base in the loop (slow; default off).")),
        "holdout_fraction": Opt(Optional[float], typer.Option(
            None, "--holdout-fraction", help="Fine-tune: held-out share made when the dataset has one split (default 0.2).")),
        "finetune_seed": Opt(Optional[int], typer.Option(None, "--finetune-seed", help="Fine-tune: seed (default --seed, else 0).")),
        "counterfactual": Opt(Optional[bool], typer.Option(
            None, "--counterfactual/--no-counterfactual", help="Fine-tune: retrain after the audit's fixes (default on).")),
        "bootstrap": Opt(Optional[int], typer.Option(
            None, "--bootstrap", help="Fine-tune: bootstrap resamples for the 95 % intervals (default 2000).")),
        "history": Opt(Optional[Path], typer.Option(
            None, "--history", help="Your own training log (Keras fit output, CSVLogger file or JSON of "
                                    "History.history), compared with the reference run.")),
    },
    "report": {
        "out": Opt(Optional[Path], typer.Option(None, "--out", "-o", help="Report folder (default reports/<dataset-name>/).")),
        "format": Opt(str, typer.Option(
            "terminal,json", "--format", help="Comma list of: terminal, json, html, markdown, junit (files go to --out).")),
        "exit_zero": Opt(bool, typer.Option(False, "--exit-zero", help="Exit 0 even when a check fails (errors still exit 2).")),
        "quiet": Opt(bool, typer.Option(False, "--quiet", "-q", help="No progress bars.")),
    },
    "quiet": {
        "quiet": Opt(bool, typer.Option(False, "--quiet", "-q", help="No progress bars.")),
    },
    "gate": {
        "baseline": Opt(Optional[Path], typer.Option(
            None, "--baseline", help="Findings recorded in this file are accepted; only new ones can fail.")),
        "update_baseline": Opt(bool, typer.Option(
            False, "--update-baseline", help="Write every current finding to the --baseline file.")),
        "against": Opt(Optional[Path], typer.Option(
            None, "--against", help="Audit DIR as incoming images merged into this existing dataset (folder or manifest).")),
        "checks": Opt(Optional[str], typer.Option(None, "--checks", help="Comma list of check ids to run (default: all).")),
    },
}

DATASET_ARGUMENT = typer.Argument(..., help="Dataset folder: DIR/<split>/<class>/… or DIR/<class>/…", show_default=False)


@dataclass(frozen=True)
class Flags:
    """What one command line said: every option's value, and the names given explicitly."""

    dataset_dir: Path
    values: dict[str, Any]
    explicit: frozenset[str]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def given(self) -> dict[str, Any]:
        """Only the options the user typed (enums as their plain values)."""
        return {k: (v.value if isinstance(v, Enum) else v) for k, v in self.values.items() if k in self.explicit}


def takes(*groups: str, extra: dict[str, Opt] | None = None) -> Callable[[Callable[[Flags], int]], Callable]:
    """Give `body(flags) -> exit code` the options of `groups` (plus `extra`) as a typer signature."""
    options: dict[str, Opt] = {}
    for group in groups:
        options.update(GROUPS[group])
    options.update(extra or {})

    def decorate(body: Callable[[Flags], int]) -> Callable:
        @functools.wraps(body)
        def command(ctx: typer.Context, dataset_dir: Path, **values: Any) -> None:
            explicit = frozenset(name for name in values if _given(ctx, name))
            raise typer.Exit(body(Flags(Path(dataset_dir), values, explicit)))

        parameters = [
            inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
            inspect.Parameter("dataset_dir", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=DATASET_ARGUMENT,
                              annotation=Path),
        ]
        parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt.declaration,
                                         annotation=opt.annotation) for name, opt in options.items()]
        command.__signature__ = inspect.Signature(parameters)
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        del command.__wrapped__  # typer must read the signature above, not the body's
        return command

    return decorate


def _given(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
