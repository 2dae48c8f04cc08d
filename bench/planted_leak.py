"""Planted-leak experiment for `gap_attribution`: does the leakage-adjusted accuracy recover the truth?

    python bench/planted_leak.py [--dataset hymenoptera_data] [--ks 0,5,20] [--epochs 15] [--learning-rate 1e-4]

For each k, copies k % of the training images (seeded; the k = 5 copies are a subset of the k = 20 ones),
each transformed like a real leak (half size, JPEG quality 60, 10 % crop, horizontal flip or ±20 %
brightness, in turn), into the validation split of a copy of the dataset, then runs the audit's
encode pass and the reference fine-tune + gap attribution on it (EfficientNet-Lite0, the offline base).

Printed per k: held-out images, planted copies and how many the audit found, the head's accuracy on all
of validation, on the images flagged as leaking, on the clean part (the leakage-adjusted accuracy, with its
bootstrap 95 % CI), on the untouched original validation split (the truth it should agree with), and the
reported inflation (with CI). The inflation should grow with k and the adjusted accuracy should agree
with the untouched split within its interval.

The reference learning rate (5e-6) needs ~100 epochs; by default this uses 1e-4 for 15 epochs (patience 5)
so the three runs take minutes on 2 CPU cores. Pass --learning-rate 5e-6 --epochs 100 for the reference.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from auditor.checks import gap_attribution  # noqa: E402
from auditor.config import AuditConfig, FinetuneOptions  # noqa: E402
from auditor.finetune.head import reference_run  # noqa: E402
from auditor.runner import prepare  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def transform(image: Image.Image, which: int) -> Image.Image:
    image = image.convert("RGB")
    if which == 0:
        return image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.Resampling.BILINEAR)
    if which == 1:
        return image  # re-encoded below at quality 60
    if which == 2:
        dx, dy = image.width // 20, image.height // 20
        return image.crop((dx, dy, image.width - dx, image.height - dy))
    if which == 3:
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return ImageEnhance.Brightness(image).enhance(1.2 if which % 2 else 0.8)


def build(source: Path, target: Path, k: float, order: list[Path], val_name: str) -> set[str]:
    shutil.copytree(source, target)
    planted = set()
    count = int(round(k / 100 * len(order)))
    for i, photo in enumerate(order[:count]):
        label = photo.parent.name
        name = f"planted_{i:04d}.jpg"
        transform(Image.open(photo), i % 5).save(target / val_name / label / name, quality=60 if i % 5 == 1 else 90)
        planted.add(f"{val_name}/{label}/{name}")
    return planted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--dataset", default="hymenoptera_data")
    parser.add_argument("--ks", default="0,5,20")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "auditor_planted_leak_cache")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    source = args.shared / args.dataset
    val_name = next(n for n in ("val", "validation", "valid", "test") if (source / n).is_dir())
    train = sorted(p for p in (source / "train").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    rng = np.random.default_rng(args.seed)
    order = [train[i] for i in rng.permutation(len(train))]
    options = FinetuneOptions(epochs=args.epochs, patience=args.patience, learning_rate=args.learning_rate,
                              seed=args.seed, counterfactual=False)
    print(f"dataset {args.dataset}: {len(train)} train images; head: reference architecture, lr {args.learning_rate}, "
          f"≤ {args.epochs} epochs (patience {args.patience}), seed {args.seed}, EfficientNet-Lite0 base")
    header = ("k %", "val", "planted", "found", "val acc", "leaked acc", "clean acc [95 % CI]", "untouched acc",
              "inflation [95 % CI]", "s")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    with tempfile.TemporaryDirectory() as work:
        for k in [float(x) for x in args.ks.split(",")]:
            started = time.perf_counter()
            root = Path(work) / f"k{k:g}"
            planted = build(source, root, k, order, val_name)
            config = AuditConfig(backbone="efficientnet-lite0", offline=True, cache_dir=args.cache_dir,
                                 seed=args.seed, finetune=options)
            ctx = prepare(root, config)
            result = gap_attribution.run(ctx)
            m = result.metrics
            ref = reference_run(ctx)
            correct = ref.run.val_probs.argmax(axis=1) == ref.val_labels
            val_paths = [ctx.records[p].path for p in ref.plan.val]
            untouched = np.array([path not in planted for path in val_paths])
            flagged = {ctx.records[p].path for p, kind in gap_attribution.duplicate_kinds(ctx, ref.plan.train,
                                                                                          ref.plan.val).items()
                       if kind != "clean"}
            ci = m["val_accuracy_clean_ci"]
            ici = m["leakage_inflation_ci"]
            print(" | ".join([
                f"{k:g}", str(len(val_paths)), str(len(planted)), f"{len(planted & flagged)} (+{len(flagged - planted)} other)",
                f"{100 * m['val_accuracy']:.1f}",
                "–" if m["val_accuracy_leaked"] is None else f"{100 * m['val_accuracy_leaked']:.1f}",
                f"{100 * m['val_accuracy_clean']:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]",
                f"{100 * correct[untouched].mean():.1f}",
                f"{100 * m['leakage_inflation']:+.2f}" + (f" [{100 * ici[0]:+.2f}, {100 * ici[1]:+.2f}]" if ici else ""),
                f"{time.perf_counter() - started:.0f}",
            ]), flush=True)


if __name__ == "__main__":
    main()
