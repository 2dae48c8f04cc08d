"""Does `auditor finetune` finish in minutes at its defaults? (issue: ≤ 10 minutes for 2 600 small photos on 2 cores)

    python bench/bench_finetune_defaults.py [--shared ../shared/datasets] [--size 32] [--train 2000] [--val 600]
                                            [--schedule fast|reference] [--work DIR]

Builds a dataset of small photos from cats_and_dogs_filtered (each photo downscaled to --size px, JPEG q75;
--train training and --val validation images, half cats, half dogs), then runs, as subprocesses like a user:
1. `auditor embed` (hashes, scans, embeddings and the base's feature maps into an empty cache: the part the
   audit pays once), timed;
2. `auditor finetune DIR` at the defaults (fast schedule; or --schedule reference), timed, with the reference run's
   epochs, accuracies and gap, and the counterfactual's, read from report.json.
The wall time of step 2 is the number the issue asks about; the ratio of the head's seconds per epoch to the
embedding stage's seconds per image is printed too, since absolute seconds depend on how busy the machine is.

`--plant-copies N` (the near-duplicate issue's own end-to-end case: 2 000 train / 600 val, 100 val images planted
copies of train images, no label changed): N of the validation images are same-shot copies of distinct training
photos (bench/truth_data.py's re-processing, then squared down like the rest), under their source's label, and
step 2 is `auditor audit DIR --finetune` (every check, as a user would run it). It prints how many copies the
audit found, what `label_issues` claims about labels nobody changed, and the points `gap_attribution` gives
each part — the mislabel part should be nil: no label is wrong by construction.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build(shared: Path, work: Path, size: int, train: int, val: int, plant: int = 0) -> Path:
    from PIL import Image

    source = shared / "cats_and_dogs_filtered"
    root = work / (f"cats_dogs_{size}px" + (f"_{plant}copies" if plant else ""))
    if root.is_dir():
        return root
    for split, src_split, count in (("train", "train", train), ("val", "validation", val - plant)):
        for label, share in (("cats", count - count // 2), ("dogs", count // 2)):
            files = sorted((source / src_split / label).glob("*.jpg"))[:share]
            (root / split / label).mkdir(parents=True, exist_ok=True)
            for path in files:
                with Image.open(path) as image:
                    small = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
                    small.save(root / split / label / path.name, "JPEG", quality=75)
    if plant:
        plant_copies(root, source, size, train, plant)
    return root


def plant_copies(root: Path, source: Path, size: int, train: int, count: int) -> None:
    """`count` same-shot copies of distinct training photos into val, named copy_NNNN_of_<source>.jpg."""
    import numpy as np
    from PIL import Image

    from truth_data import jpeg, leak_kind, same_shot  # beside this script (its folder is on sys.path)

    trained = [(label, path) for label, share in (("cats", train - train // 2), ("dogs", train // 2))
               for path in sorted((source / "train" / label).glob("*.jpg"))[:share]]
    order = np.random.default_rng(0).permutation(len(trained))[:count]
    for i, k in enumerate(order):
        label, path = trained[k]
        rng = np.random.default_rng([0, i])
        with Image.open(path) as image:
            copy = same_shot(image, rng, leak_kind(i)).resize((size, size), Image.Resampling.BICUBIC)
        (root / "val" / label / f"copy_{i:04d}_of_{path.name}").write_bytes(jpeg(copy, int(rng.integers(50, 91))))


def report_claims(report: dict, plant: int) -> None:
    """What the audit says about the planted copies and the labels (none changed), and the gap's parts."""
    checks = {c["id"]: c for c in report["checks"]}
    leaked = {path for finding in checks["leakage"].get("findings", []) for path in finding.get("paths", [])
              if Path(path).parts[0] == "val"}
    found = sum(Path(path).name.startswith("copy_") for path in leaked)
    print(f"planted copies: {plant}; val images the leakage check flags: {len(leaked)}, of them planted: {found}")
    labels = checks["label_issues"]["metrics"]
    print(f"label_issues (no label was changed): estimate {labels.get('estimated_noise_percent')} % "
          f"{[round(100 * v, 2) for v in labels.get('noise_rate_interval', [])]}, supported {labels.get('supported')}, "
          f"strong evidence {labels.get('strong_evidence')}; summary: {checks['label_issues']['summary']}")
    gap = checks["gap_attribution"]["metrics"]
    print(f"gap_attribution: gap {gap['gap_points']} points, parts {gap['decomposition']['points']}, "
          f"mislabels {gap['probable_mislabels']}")
    print(f"verdict: {gap['verdict']}")


def run(arguments: list[str]) -> float:
    command = [sys.executable, "-m", "auditor", *arguments]
    started = time.perf_counter()
    completed = subprocess.run(command, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, cwd=REPO)
    if completed.returncode > 1:
        raise SystemExit(f"failed ({completed.returncode}): {' '.join(command)}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=600)
    parser.add_argument("--schedule", default="fast", choices=("fast", "reference"))
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--plant-copies", type=int, default=0)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="auditor-bench-finetune-"))
    data = build(args.shared, work, args.size, args.train, args.val, args.plant_copies)
    cache = work / f"cache-{args.schedule}"
    common = ["--offline", "--backbone", "efficientnet-lite0", "--cache-dir", str(cache), "-q"]
    embed_s = run(["embed", str(data), *common])
    out = work / f"out-{args.schedule}"
    # `embed` warms scans and embeddings; the feature maps come with the fine-tune's own encode pass.
    command = ["audit", str(data), "--finetune"] if args.plant_copies else ["finetune", str(data)]
    finetune_s = run([*command, *common, "--finetune-schedule", args.schedule, "--out", str(out),
                      "--format", "json", "--exit-zero"])
    report = json.loads((out / "report.json").read_text())
    checks = {c["id"]: c for c in report["checks"]}
    reference = checks["reference_finetune"]["metrics"]
    final = reference["final"]
    gap = checks["gap_attribution"]["metrics"]
    cf = gap.get("counterfactual", {})
    images = args.train + args.val
    print(f"\ndataset: {data} ({args.train} train + {args.val} val, {args.size} px); schedule {args.schedule}")
    print(f"auditor embed (empty cache): {embed_s:.0f} s = {embed_s / images * 1000:.0f} ms per image")
    print(f"auditor finetune at the defaults: {finetune_s:.0f} s = {finetune_s / 60:.1f} min "
          f"(feature maps, the reference run, the counterfactual and the checks it reads)")
    print(f"reference run: {final['epochs_run']} epochs (best {final['best_epoch']}), train {final['train_accuracy']:.3f}, "
          f"val {final['val_accuracy']:.3f}, gap {final['gap_points']:.1f} points; "
          f"{final['seconds_per_epoch_per_1000_images']:.1f} s per epoch per 1 000 images "
          f"(= {final['seconds_per_epoch_per_1000_images'] / (embed_s / images * 1000):.1f}× the embedding of 1 000 images)")
    if cf.get("ran"):
        print(f"counterfactual: {cf['epochs_run']} epochs, train {cf['train_accuracy']:.3f}, val {cf['val_accuracy']:.3f}")
    else:
        print(f"counterfactual: not run ({cf.get('reason')})")
    print("timings:", json.dumps(report["timings_s"]))
    if args.plant_copies:
        report_claims(report, args.plant_copies)


if __name__ == "__main__":
    main()
