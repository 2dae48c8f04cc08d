"""Benchmark `label_issues` on real photos with labels flipped on purpose.

    python bench/bench_label_issues.py [--shared ../shared/datasets] [--cache-dir /tmp/auditor_bench_cache]

Embeds cats_and_dogs_filtered (3000 photos, 2 classes) once into the cache (about 80–150 s on CPU), and,
with `--four-class`, hymenoptera_data too (ants, bees, cats, dogs: 3398 photos, unequal classes). Then, for
each flip rate (2, 5, 10 % of the images, seeded), it gives that many images a wrong label (uniformly one
of the other classes) by rewriting the index — no file is copied or moved — and prints the precision and
recall of the flagged set for:

- `confident learning`: what the check flags (per-class thresholds → calibrated confident joint → estimated
  number of wrong labels; that many flagged, lowest self-confidence first);
- `CL prune by pair`: the paper's "prune by noise rate" (per class pair, that pair's estimated count,
  largest margin first), on the same probabilities;
- `CL strong evidence`: the flagged images that the probe also puts confidently in another class (above
  that class's threshold) and that most of their k nearest neighbours contradict (the check's `warning`
  findings; the rest are `info`);
- `global p<0.5`: one fixed threshold on self-confidence (flag when the given label's probability < 0.5);
- `global oracle-n`: one global threshold on self-confidence placed to flag exactly as many images as
  were flipped — a count no user knows; it shows how much the estimated count costs. (A threshold set to
  flag as many images as confident learning does is the check itself: it ranks by self-confidence.)

All read the same out-of-fold probabilities, so the comparison is of the selection rule only.
The 0 % row counts what is flagged in the dataset as published (real label errors or ambiguous photos).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from auditor.backbones.registry import resolve_backbone  # noqa: E402
from auditor.encoding.cache import Cache  # noqa: E402
from auditor.checks import label_issues as li  # noqa: E402
from auditor.config import AuditConfig  # noqa: E402
from auditor.context import AuditContext, scan_limits  # noqa: E402
from auditor.index.dataset import DatasetIndex, ImageRecord, load_dataset  # noqa: E402
from auditor.encoding.encode import encode_dataset  # noqa: E402


def combined_index(shared: Path, names: list[str], config: AuditConfig) -> DatasetIndex:
    """One index over several split/class datasets; paths are prefixed with the dataset's folder."""
    records = []
    for name in names:
        index = load_dataset(shared / name, config)
        for r in index.records:
            split = "val" if r.split in ("validation", "val") else r.split
            records.append(ImageRecord(f"{name}/{r.path}", r.abspath, split=split, label=r.label))
    return DatasetIndex(root=shared, layout="splits", records=records)


def flipped(index: DatasetIndex, rate: float, seed: int) -> tuple[DatasetIndex, set[int]]:
    rng = np.random.default_rng(seed)
    classes = index.classes
    count = int(round(rate * len(index.records)))
    chosen = rng.choice(len(index.records), size=count, replace=False)
    records = list(index.records)
    for position in chosen:
        others = [c for c in classes if c != records[position].label]
        records[position] = dataclasses.replace(records[position], label=str(rng.choice(others)))
    return DatasetIndex(root=index.root, layout=index.layout, records=records), set(int(p) for p in chosen)


def precision_recall(flagged: set[int], truth: set[int]) -> tuple[float, float, int]:
    hits = len(flagged & truth)
    precision = hits / len(flagged) if flagged else float("nan")
    recall = hits / len(truth) if truth else float("nan")
    return precision, recall, len(flagged)


def evaluate(ctx: AuditContext, truth: set[int]) -> dict[str, tuple[float, float, int]]:
    analysis = li.analyse(ctx)
    quality = analysis.label_quality

    def positions(mask: np.ndarray) -> set[int]:
        return {p for u in np.flatnonzero(mask) for p in analysis.unit_positions[u]}

    lowest = np.zeros(len(quality), dtype=bool)
    lowest[np.argsort(quality, kind="stable")[:len(truth)]] = True
    by_pair = li.find_label_issues(analysis.probs, analysis.unit_labels, "prune_by_noise_rate")
    return {
        "confident learning": precision_recall(positions(analysis.issues), truth),
        "CL prune by pair": precision_recall(positions(by_pair), truth),
        "CL strong evidence": precision_recall(positions(analysis.strong), truth),
        "global p<0.5": precision_recall(positions(quality < 0.5), truth),
        "global oracle-n": precision_recall(positions(lowest), truth),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/auditor_bench_cache"))
    parser.add_argument("--rates", default="0,0.02,0.05,0.10")
    parser.add_argument("--seeds", default="0,1,2", help="flip seeds; results are averaged over them")
    parser.add_argument("--four-class", action="store_true", help="also run on hymenoptera + cats/dogs (4 classes)")
    args = parser.parse_args()
    config = AuditConfig(backbone="efficientnet-lite0", cache_dir=args.cache_dir, offline=True)
    backbone = resolve_backbone(config.backbone, config.weights, config.offline, config.precision)
    cache = Cache(config.cache_dir)
    datasets = [["cats_and_dogs_filtered"]] + ([["hymenoptera_data", "cats_and_dogs_filtered"]] if args.four_class else [])
    rates = [float(r) for r in args.rates.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    for names in datasets:
        index = combined_index(args.shared, names, config)
        started = time.perf_counter()
        encoded = encode_dataset(index, cache, backbone, scan_limits(config), max_file_bytes=2**30,
                                 batch_size=config.batch_size, workers=config.workers)
        print(f"\n## {' + '.join(names)}: {len(index.records)} images, classes {', '.join(index.classes)} "
              f"(encode {time.perf_counter() - started:.0f} s, {int(encoded.stats['embeddings_computed'])} embedded)")
        print(f"{'flipped':>8} {'method':<20} {'precision':>9} {'recall':>7} {'flagged':>8}   (mean over seeds {args.seeds})")
        for rate in rates:
            rows: dict[str, list] = {}
            seconds = []
            for seed in seeds if rate > 0 else seeds[:1]:
                noisy, truth = flipped(index, rate, seed) if rate > 0 else (index, set())
                ctx = AuditContext(index=noisy, config=config.replace(seed=seed), encoded=encoded, backbone=backbone,
                                   cache=cache)
                tick = time.perf_counter()
                for method, values in evaluate(ctx, truth).items():
                    rows.setdefault(method, []).append(values)
                seconds.append(time.perf_counter() - tick)
            for method, values in rows.items():
                p, r, n = (np.nanmean([v[i] for v in values]) if rate > 0 or i == 2 else float("nan") for i in range(3))
                print(f"{100 * rate:>7.0f}% {method:<20} {p:>9.3f} {r:>7.3f} {n:>8.1f}")
            print(f"{'':>8} (label analysis {np.mean(seconds):.1f} s per run)")


if __name__ == "__main__":
    main()
