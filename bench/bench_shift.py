"""Benchmark `split_shift` and `shortcuts`: false alarms on random re-splits, detection of planted shift,
and runtime against the time the embeddings took, on real photos and at 50 000 images.

    python bench/bench_shift.py [--shared ../shared/datasets] [--dataset cats_and_dogs_filtered]
                                [--cache-dir /tmp/auditor_bench_cache] [--resplits 20] [--planted 100]
                                [--synthetic 50000]

1. Embeds the dataset once into the cache (offline EfficientNet-Lite0) and measures the embedding rate
   on a fresh sample (decode + inference, no cache), so the audit's embedding time is known even when
   the cache is warm.
2. Random re-splits: pools every image, draws a new held-out split of the original size per class
   (seeded), and runs both checks. The images are the same, so every flag is a false alarm. Also
   shuffles the labels (seeded) to measure the shortcut check's false alarms.
3. Planted shift: a random re-split whose held-out images are replaced by transformed copies
   (brighter, blurred, downscaled, recompressed, all at once); detection must follow.
4. Synthetic scale: 50 000 vectors resampled from the real embeddings (with noise) and real scans,
   100 classes, a random 80/20 split; both checks timed unshifted and with a shift (the worst case:
   every permutation runs). The embedding time for 50 000 images is extrapolated from step 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from auditor.encoding.cache import Cache  # noqa: E402
from auditor.checks import shortcuts, split_shift  # noqa: E402
from auditor.config import AuditConfig  # noqa: E402
from auditor.context import AuditContext, scan_limits  # noqa: E402
from auditor.index.dataset import DatasetIndex, ImageRecord  # noqa: E402
from auditor.encoding.encode import Encoded, encode_dataset  # noqa: E402
from auditor.runner import prepare  # noqa: E402


def timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def embedding_rate(ctx: AuditContext, sample: int, seed: int) -> float:
    """Seconds per image to decode and embed, measured without the cache on `sample` images (model already built)."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(ctx.records), size=min(sample, len(ctx.records)), replace=False)
    index = DatasetIndex(root=ctx.index.root, layout="bench", records=[ctx.records[i] for i in sorted(picked)])
    size = ctx.backbone.input_size
    ctx.backbone.embed(np.zeros((1, size, size, 3), np.uint8))  # build and trace the model outside the timing
    encoded = encode_dataset(index, Cache(None), ctx.backbone, scan_limits(ctx.config),
                             max_file_bytes=int(ctx.config.max_file_mb * 2**20), batch_size=32, workers=2)
    return encoded.stats["decode_embed_s"] / len(index.records)


def resplit(ctx: AuditContext, seed: int, held_out_name: str = "val") -> AuditContext:
    """Same images, new split: per class, as many held-out images as the original split had, drawn at random."""
    rng = np.random.default_rng(seed)
    records = ctx.records
    by_class: dict[str, list[int]] = {}
    held_counts: dict[str, int] = {}
    for i, r in enumerate(records):
        by_class.setdefault(r.label, []).append(i)
        if r.split != "train":
            held_counts[r.label] = held_counts.get(r.label, 0) + 1
    held = set()
    for label, members in by_class.items():
        held.update(rng.choice(members, size=held_counts.get(label, 0), replace=False).tolist())
    new = [dataclasses.replace(r, split=held_out_name if i in held else "train") for i, r in enumerate(records)]
    return dataclasses.replace(ctx, index=DatasetIndex(ctx.index.root, ctx.index.layout, new),
                               config=ctx.config.replace(seed=seed))


def shuffled_labels(ctx: AuditContext, seed: int) -> AuditContext:
    rng = np.random.default_rng(seed)
    labels = [r.label for r in ctx.records]
    rng.shuffle(labels)
    new = [dataclasses.replace(r, label=label) for r, label in zip(ctx.records, labels)]
    return dataclasses.replace(ctx, index=DatasetIndex(ctx.index.root, ctx.index.layout, new),
                               config=ctx.config.replace(seed=seed))


def split_row(result) -> dict:
    val = result.metrics["per_split"].get("val", {})
    return {
        "status": result.status.value,
        "auc": (val.get("domain_classifier") or {}).get("auc"),
        "classifier_p": (val.get("domain_classifier") or {}).get("p_value"),
        "mmd_p": (val.get("mmd") or {}).get("p_value"),
        "p": val.get("p_value"),
        "class_shift": any(c["shifted"] for c in val.get("per_class", {}).values()),
        "drift": sorted(n for n, d in val.get("property_drift", {}).items() if d.get("drifts")),
    }


def transform(kind: str):
    from PIL import Image, ImageEnhance, ImageFilter

    def apply(image: Image.Image) -> tuple[Image.Image, int | None]:
        quality = None  # None: re-encode with the original's quantisation tables, so only `kind` changes
        if kind in ("brighter_1.3", "all"):
            image = ImageEnhance.Brightness(image).enhance(1.3 if kind != "all" else 1.5)
        if kind in ("blur_2", "all"):
            image = image.filter(ImageFilter.GaussianBlur(2 if kind != "all" else 1.2))
        if kind in ("half_size", "all"):
            image = image.resize((image.width // 2, image.height // 2), Image.Resampling.BILINEAR)
        if kind == "jpeg_q20":
            quality = 20
        return image, quality

    return apply


def planted(ctx: AuditContext, kinds: list[str], count: int, seed: int, config: AuditConfig, work: Path) -> list[dict]:
    """A random re-split whose first `count` held-out images are replaced by transformed copies."""
    from PIL import Image

    base = resplit(ctx, seed)
    held = [r for r in base.records if r.split != "train"]
    rng = np.random.default_rng(seed)
    chosen = [held[i] for i in sorted(rng.choice(len(held), size=min(count, len(held)), replace=False))]
    train = [r for r in base.records if r.split == "train"]
    rows = []
    for kind in kinds:
        folder = work / kind
        folder.mkdir(parents=True, exist_ok=True)
        manifest = work / f"{kind}.csv"
        lines = ["path,label,split"] + [f"{r.abspath},{r.label},train" for r in train]
        for r in chosen:
            target = folder / f"{r.label}__{Path(r.path).stem}.jpg"
            if not target.exists():
                with Image.open(r.abspath) as image:
                    tables = getattr(image, "quantization", None)
                    moved, quality = transform(kind)(image.convert("RGB"))
                    if quality is None and tables:
                        moved.save(target, "JPEG", qtables=tables)
                    else:
                        moved.save(target, "JPEG", quality=quality or 90)
            lines.append(f"{target},{r.label},val")
        manifest.write_text("\n".join(lines) + "\n")
        shifted_ctx, encode_s, _ = timed(prepare, work, config.replace(manifest=manifest, allow_outside_root=True))
        result, wall, cpu = timed(split_shift.CHECK.run, shifted_ctx)
        rows.append({"kind": kind, "held_out": len(chosen), "train": len(train), **split_row(result),
                     "summary": result.summary, "check_s": round(wall, 2), "check_cpu_s": round(cpu, 2)})
    return rows


def synthetic(ctx: AuditContext, size: int, seed: int, shift: float) -> tuple[AuditContext, dict]:
    """`size` images: real vectors resampled with noise (+ `shift` along one direction for held-out), real scans."""
    rng = np.random.default_rng(seed)
    shas = [ctx.encoded.record_sha[p] for p in ctx.usable_positions]
    base = np.stack([ctx.encoded.embeddings[s] for s in shas]).astype(np.float32)
    scale = float(base.std(axis=0).mean())
    direction = rng.normal(size=base.shape[1]).astype(np.float32)
    direction /= np.linalg.norm(direction)
    picks = rng.integers(0, len(shas), size=size)
    is_held = rng.random(size) < 0.2
    labels = rng.integers(0, 100, size=size)
    records, record_sha, embeddings, scans = [], [], {}, {}
    for i in range(size):
        sha = f"{i:064x}"
        vector = base[picks[i]] + rng.normal(scale=0.3 * scale, size=base.shape[1]).astype(np.float32)
        if is_held[i]:
            vector = vector + shift * np.linalg.norm(base[picks[i]]) * direction
        embeddings[sha] = vector
        scans[sha] = ctx.encoded.scans[shas[picks[i]]]
        split = "val" if is_held[i] else "train"
        label = f"class{labels[i]:03d}"
        records.append(ImageRecord(f"{split}/{label}/{i}.jpg", Path(f"/synthetic/{i}.jpg"), split=split, label=label))
        record_sha.append(sha)
    encoded = Encoded(record_sha=record_sha, read_problems={}, scans=scans, embeddings=embeddings)
    index = DatasetIndex(root=Path("/synthetic"), layout="synthetic", records=records)
    return (AuditContext(index=index, config=ctx.config.replace(seed=seed), encoded=encoded, backbone=ctx.backbone,
                         cache=ctx.cache), {"images": size, "held_out": int(is_held.sum()), "classes": 100})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--dataset", default="cats_and_dogs_filtered")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/auditor_bench_cache"))
    parser.add_argument("--resplits", type=int, default=20)
    parser.add_argument("--label-shuffles", type=int, default=20)
    parser.add_argument("--planted", type=int, default=100, help="held-out images per planted shift (0: skip)")
    parser.add_argument("--synthetic", type=int, default=50_000, help="images in the scale test (0: skip)")
    parser.add_argument("--rate-sample", type=int, default=96, help="images embedded without cache to time embedding")
    parser.add_argument("--json", type=Path, help="also write every number here")
    args = parser.parse_args()

    config = AuditConfig(backbone="efficientnet-lite0", offline=True, cache_dir=args.cache_dir)
    out: dict = {"dataset": args.dataset}
    ctx, prepare_s, _ = timed(prepare, args.shared / args.dataset, config)
    ctx.index.records[:] = [dataclasses.replace(r, split="val") if r.split != "train" else r for r in ctx.records]
    n = len(ctx.usable_positions)
    seconds_per_image = embedding_rate(ctx, args.rate_sample, 0)
    embed_s = seconds_per_image * n
    out["embedding"] = {"images": n, "seconds_per_image": round(seconds_per_image, 4), "dataset_s": round(embed_s, 1),
                        "prepare_with_cache_s": round(prepare_s, 1)}
    print(f"{args.dataset}: {n} images; embedding {1 / seconds_per_image:.1f} images/s (decode + inference, no cache) "
          f"→ {embed_s:.0f} s for the dataset")

    if args.resplits:
        print(f"\n== {args.resplits} random re-splits (same images: every flag is a false alarm), alpha = "
              f"{config.policy.alpha} ==")
        rows = []
        for seed in range(args.resplits):
            trial = resplit(ctx, seed)
            shift_result, shift_wall, shift_cpu = timed(split_shift.CHECK.run, trial)
            cut_result, cut_wall, cut_cpu = timed(shortcuts.CHECK.run, trial)
            row = {"seed": seed, **split_row(shift_result), "shortcuts": cut_result.status.value,
                   "shortcut_lift": cut_result.metrics["model"]["lift"], "shortcut_p": cut_result.metrics["model"]["p_value"],
                   "split_shift_s": shift_wall, "split_shift_cpu_s": shift_cpu, "shortcuts_s": cut_wall,
                   "shortcuts_cpu_s": cut_cpu}
            rows.append(row)
            print(f"  seed {seed:2d}: split_shift {row['status']:4s} AUC {row['auc']:.3f} p {row['p']:.3g} "
                  f"(classifier {row['classifier_p']:.3g}, MMD {row['mmd_p']:.3g}) class shift {row['class_shift']!s:5s} "
                  f"drift {','.join(row['drift']) or '-':12s} | shortcuts {row['shortcuts']} (lift {row['shortcut_lift']:.2f},"
                  f" p {row['shortcut_p']:.3g}) | {shift_wall:.1f} s + {cut_wall:.1f} s")
        k = len(rows)
        fails = sum(r["status"] == "fail" for r in rows)
        flagged = sum(r["status"] != "pass" for r in rows)
        summary = {
            "resplits": k,
            "split_level_false_alarm_rate": fails / k,
            "any_flag_rate": flagged / k,
            "combined_p_below_alpha": sum(r["p"] < config.policy.alpha for r in rows) / k,
            "classifier_p_below_alpha": sum(r["classifier_p"] < config.policy.alpha for r in rows) / k,
            "mmd_p_below_alpha": sum(r["mmd_p"] < config.policy.alpha for r in rows) / k,
            "combined_p_below_0.05": sum(r["p"] < 0.05 for r in rows) / k,
            "combined_p_below_0.2": sum(r["p"] < 0.2 for r in rows) / k,
            "class_shift_rate": sum(r["class_shift"] for r in rows) / k,
            "drift_rate": sum(bool(r["drift"]) for r in rows) / k,
            "auc_mean": statistics.mean(r["auc"] for r in rows), "auc_max": max(r["auc"] for r in rows),
            "split_shift_s_mean": statistics.mean(r["split_shift_s"] for r in rows),
            "split_shift_cpu_s_mean": statistics.mean(r["split_shift_cpu_s"] for r in rows),
            "shortcuts_s_mean": statistics.mean(r["shortcuts_s"] for r in rows),
            "shortcuts_cpu_s_mean": statistics.mean(r["shortcuts_cpu_s"] for r in rows),
        }
        out["resplits"] = {"rows": rows, "summary": summary}
        both = summary["split_shift_s_mean"] + summary["shortcuts_s_mean"]
        print(f"  → split_shift FAIL (split-level false alarm) in {fails}/{k} = {fails / k:.1%}; any flag (fail or warn) "
              f"{flagged}/{k}; p < alpha: combined {summary['combined_p_below_alpha']:.0%}, classifier "
              f"{summary['classifier_p_below_alpha']:.0%}, MMD {summary['mmd_p_below_alpha']:.0%}; p < 0.05: "
              f"{summary['combined_p_below_0.05']:.0%}; p < 0.2: {summary['combined_p_below_0.2']:.0%}")
        print(f"  → time per audit: split_shift {summary['split_shift_s_mean']:.1f} s, shortcuts "
              f"{summary['shortcuts_s_mean']:.1f} s (CPU {summary['split_shift_cpu_s_mean']:.1f} + "
              f"{summary['shortcuts_cpu_s_mean']:.1f} s); together {both / embed_s:.1%} of the embedding time")

    if args.label_shuffles:
        print(f"\n== {args.label_shuffles} label shuffles (properties cannot predict a random label) ==")
        warns = 0
        for seed in range(args.label_shuffles):
            result = shortcuts.CHECK.run(shuffled_labels(ctx, 1000 + seed))
            warns += result.status.value != "pass"
            model = result.metrics["model"]
            print(f"  seed {seed:2d}: shortcuts {result.status.value:4s} balanced accuracy {model['balanced_accuracy']:.3f} "
                  f"p {model['p_value']:.3g}")
        out["label_shuffles"] = {"runs": args.label_shuffles, "false_alarm_rate": warns / args.label_shuffles}
        print(f"  → shortcuts false alarms {warns}/{args.label_shuffles} = {warns / args.label_shuffles:.1%}")

    if args.planted:
        print(f"\n== planted shift: {args.planted} held-out images of a random re-split transformed ==")
        work = Path(tempfile.gettempdir()) / f"auditor_bench_shift_{args.dataset}_v2"
        rows = planted(ctx, ["brighter_1.3", "blur_2", "half_size", "jpeg_q20", "all"], args.planted, 7, config, work)
        out["planted"] = rows
        for row in rows:
            print(f"  {row['kind']:12s}: {row['status']:4s} AUC {row['auc']:.3f} p {row['p']:.3g} (classifier "
                  f"{row['classifier_p']:.3g}, MMD {row['mmd_p']:.3g}) class shift {row['class_shift']} drift "
                  f"{','.join(row['drift']) or '-'} | {row['check_s']:.1f} s")
            print(f"                {row['summary']}")

    if args.synthetic:
        print(f"\n== scale: {args.synthetic} synthetic images (real vectors resampled + noise, real scans, 100 classes) ==")
        scale_embed_s = seconds_per_image * args.synthetic
        out["synthetic"] = {"embedding_s_extrapolated": round(scale_embed_s)}
        for label, shift in (("unshifted", 0.0), ("shifted", 0.1)):
            big, info = synthetic(ctx, args.synthetic, 11, shift)
            shift_result, shift_wall, shift_cpu = timed(split_shift.CHECK.run, big)
            cut_result, cut_wall, cut_cpu = timed(shortcuts.CHECK.run, big)
            row = {**info, **split_row(shift_result), "split_shift_s": round(shift_wall, 1),
                   "split_shift_cpu_s": round(shift_cpu, 1), "shortcuts_s": round(cut_wall, 1),
                   "shortcuts_cpu_s": round(cut_cpu, 1)}
            out["synthetic"][label] = row
            print(f"  {label:9s}: split_shift {row['status']} AUC {row['auc']:.3f} p {row['p']:.3g} in {shift_wall:.1f} s "
                  f"(CPU {shift_cpu:.1f}); shortcuts {cut_result.status.value} in {cut_wall:.1f} s (CPU {cut_cpu:.1f}); "
                  f"together {(shift_wall + cut_wall) / scale_embed_s:.1%} of the ≈ {scale_embed_s:.0f} s the embeddings "
                  f"take at {1 / seconds_per_image:.1f} images/s")
            del big
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
