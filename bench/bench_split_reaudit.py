"""Does a split written by `auditor split` pass a fresh audit? Planted leaks and conflicts in a real dataset →
`auditor split --materialize` (both modes) → an independent audit of the materialized folder (its own
calibration, default thresholds) → leakage and label_conflicts.

    python bench/bench_split_reaudit.py [--dataset ../shared/datasets/hymenoptera_data] [--per-class 0]
                                        [--leak-percent 10] [--conflicts 4] [--cache-dir DIR] [--work DIR]

The dataset's own train/val(idation) split is copied (--per-class N: the first N photos of each class and split),
then leak-percent % of the train photos are copied into val, transformed like real leaks in turn (half size,
JPEG quality 60, 10 % crop, mirror, ±20 % brightness), and `--conflicts` train photos are copied unchanged into
val under the other class. Printed: planted vs found, leaks and conflicts before/after as the split reports them,
the re-audit's leakage/label_conflicts status and its calibrated min_cosine next to the split's, and timings.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageEnhance

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from auditor.config import AuditConfig  # noqa: E402
from auditor.fix.command import SplitOptions, run_split  # noqa: E402
from auditor.fix.split_csv import read_split_csv  # noqa: E402
from auditor.runner import prepare, run_checks  # noqa: E402

SUFFIXES = {".jpg", ".jpeg", ".png"}


def _leak(image: Image.Image, which: int) -> Image.Image:
    image = image.convert("RGB")
    if which == 0:
        return image.resize((max(1, image.width // 2), max(1, image.height // 2)))
    if which == 2:
        dx, dy = image.width // 20, image.height // 20
        return image.crop((dx, dy, image.width - dx, image.height - dy))
    if which == 3:
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if which == 4:
        return ImageEnhance.Brightness(image).enhance(1.2)
    return image  # 1: re-encoded at quality 60 only


def build(source: Path, root: Path, per_class: int, leak_percent: float, conflicts: int) -> dict:
    splits = {p.name: p for p in source.iterdir() if p.is_dir()}
    train_dir = splits["train"]
    val_name = next(n for n in ("val", "validation", "valid", "test") if n in splits)
    for name, folder in (("train", train_dir), ("val", splits[val_name])):
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            photos = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in SUFFIXES)
            (root / name / class_dir.name).mkdir(parents=True)
            for photo in photos[:per_class] if per_class else photos:
                shutil.copy(photo, root / name / class_dir.name / photo.name)
    train = sorted((root / "train").rglob("*"))
    train = [p for p in train if p.suffix.lower() in SUFFIXES]
    classes = sorted(p.name for p in (root / "train").iterdir())
    step = max(1, int(round(100 / leak_percent))) if leak_percent else 0
    planted = {}  # copy → original (relative paths)
    for k, photo in enumerate(train[::step] if step else []):
        target = root / "val" / photo.parent.name / f"leak{k}_{photo.stem}.jpg"
        _leak(Image.open(photo), k % 5).save(target, quality=60 if k % 5 == 1 else 90)
        planted[target.relative_to(root).as_posix()] = photo.relative_to(root).as_posix()
    conflicted = []
    for k, photo in enumerate(train[1::max(1, len(train) // max(1, conflicts))][:conflicts]):
        other = classes[(classes.index(photo.parent.name) + 1) % len(classes)]
        target = root / "val" / other / f"conflict{k}_{photo.name}"
        shutil.copy(photo, target)
        conflicted.append(target.relative_to(root).as_posix())
    return {"planted": planted, "conflicts": conflicted,
            "images": sum(1 for p in root.rglob("*") if p.is_file())}


def reaudit(folder: Path, config: AuditConfig) -> dict:
    ctx = prepare(folder, config)
    results = {r.id: r for r in run_checks(ctx, ["leakage", "label_conflicts"])}
    return {"leakage": results["leakage"].status.value, "leakage_summary": results["leakage"].summary,
            "label_conflicts": results["label_conflicts"].status.value,
            "min_cosine": round(ctx.calibration.min_cosine, 4) if ctx.calibration.min_cosine else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=REPO.parent / "shared" / "datasets" / "hymenoptera_data")
    parser.add_argument("--per-class", type=int, default=0)
    parser.add_argument("--leak-percent", type=float, default=10.0)
    parser.add_argument("--conflicts", type=int, default=4)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="split-reaudit-"))
    root = work / "data"
    if root.exists():
        shutil.rmtree(root)
    planted = build(args.dataset, root, args.per_class, args.leak_percent, args.conflicts)
    print(f"{args.dataset.name}: {planted['images']} files, {len(planted['planted'])} planted leaks, "
          f"{len(planted['conflicts'])} planted conflicts")
    config = AuditConfig(backbone="efficientnet-lite0", offline=True, seed=0,
                         **({"cache_dir": args.cache_dir} if args.cache_dir else {}))
    ctx = prepare(root, config)
    for mode, options in (("fractions 0.8/0.2", dict(fractions={"train": 0.8, "val": 0.2})),
                          ("keep-existing", dict(keep_existing=True)),
                          ("keep-existing --dedupe", dict(keep_existing=True, dedupe=True))):
        dest = work / f"materialized-{mode.replace(' ', '_').replace('/', '-')}"
        if dest.exists():
            shutil.rmtree(dest)
        started = time.perf_counter()
        outcome = run_split(root, config, SplitOptions(output=work / "split.csv", materialize=dest, **options), ctx=ctx)
        split_s = time.perf_counter() - started
        stats = outcome.stats
        rows = {r.path: r for r in read_split_csv(work / "split.csv")}
        found = sum(1 for p in planted["planted"] if rows[p].group)
        started = time.perf_counter()
        again = reaudit(dest, config)
        print(f"\n[{mode}] split {split_s:.1f} s, re-audit {time.perf_counter() - started:.1f} s")
        print(f"  planted leaks in a duplicate group: {found} of {len(planted['planted'])}; planted conflicts excluded: "
              f"{sum(1 for p in planted['conflicts'] if rows[p].reason.startswith('label_conflict'))} of "
              f"{len(planted['conflicts'])}")
        apart = sum(1 for copy, original in planted["planted"].items()
                    if rows[copy].split and rows[original].split and rows[copy].split != rows[original].split)
        print(f"  planted copies still in another split than their original (ground truth): {apart}")
        print(f"  before: {stats['before']['leaks']['per_split']} conflicts {stats['before']['conflicts']}")
        print(f"  after:  kept {stats['kept']}, excluded {stats['excluded']['by_kind']}, moved {stats['moved']['total']}, "
              f"sizes {stats['sizes']}")
        if "targets" in stats:
            print(f"  targets: worst class {stats['targets']['worst_class_error_points']} points, "
                  f"worst size {stats['targets']['worst_size_error_points']} points")
        print(f"  verification: {stats.get('verification')}")
        print(f"  re-audit: leakage {again['leakage']} ({again['leakage_summary']}), label_conflicts "
              f"{again['label_conflicts']}; min_cosine split {stats['duplicate_decision']['min_cosine']} vs "
              f"re-audit {again['min_cosine']}")


if __name__ == "__main__":
    main()
