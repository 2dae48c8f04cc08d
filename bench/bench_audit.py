"""Throughput of each audit stage on a real dataset, as ratios to references measured in the same run.

    python bench/bench_audit.py [--dataset ../shared/datasets/cats_and_dogs_filtered] [--limit N]
                                [--backbone efficientnet-lite0] [--weights none] [--precision auto]

Reference: the backbone's raw inference throughput on already-decoded 224×224 arrays (no I/O, no
decoding). Targets (issue #2): the whole first audit at ≥ 80 % of that, and a re-run on the unchanged
dataset ≥ 20× faster than the first. The machine is shared and noisy: compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from auditor.backbones import lite  # noqa: E402
from auditor.backbones.registry import resolve_backbone  # noqa: E402
from auditor.index.dataset import load_dataset  # noqa: E402
from auditor.config import AuditConfig  # noqa: E402
from auditor.encoding.imaging import ScanLimits, scan_bytes, sha256_hex  # noqa: E402


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def write_subset_manifest(dataset: Path, limit: int | None, destination: Path) -> int:
    index = load_dataset(dataset, AuditConfig())
    records = sorted(index.records, key=lambda r: r.path)
    if limit:
        step = max(1, len(records) // limit)  # spread over classes and splits, deterministically
        records = records[::step][:limit]
    with destination.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        for r in records:
            writer.writerow([r.path, r.label, r.split])
    return len(records)


def raw_inference(backbone, batch: np.ndarray) -> float:
    backbone.embed(batch)  # build and warm up
    started, done = time.perf_counter(), 0
    while time.perf_counter() - started < 20 or done < 4 * len(batch):
        backbone.embed(batch)
        done += len(batch)
    return rate(done, time.perf_counter() - started)


def run_audit(dataset: Path, manifest: Path, cache: Path, out: Path, args) -> tuple[float, dict]:
    command = [sys.executable, "-m", "auditor", "audit", str(dataset), "--manifest", str(manifest), "--cache-dir",
               str(cache), "--out", str(out), "--format", "json", "--exit-zero", "-q", "--backbone", args.backbone,
               "--precision", args.precision, "--offline"]
    if args.weights:
        command += ["--weights", args.weights]
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return time.perf_counter() - started, json.loads((out / "report.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=REPO.parent / "shared" / "datasets" / "cats_and_dogs_filtered")
    parser.add_argument("--limit", type=int, default=None, help="audit an evenly spread subset of this many images")
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--weights", default=None, help="e.g. 'none' to time ResNet50 without its ImageNet weights")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    from machine import describe  # the bench folder is on sys.path when a bench runs as a script

    print(describe(), flush=True)

    work = Path(tempfile.mkdtemp(prefix="auditor-bench-"))
    manifest = work / "subset.csv"
    n = write_subset_manifest(args.dataset, args.limit, manifest)
    index = load_dataset(args.dataset, AuditConfig(manifest=manifest))
    paths = [r.abspath for r in index.records]
    print(f"dataset: {args.dataset} ({n} images), backbone {args.backbone}, precision {args.precision}")

    # Stage 1: read + sha256 (what every run, even a fully cached one, does).
    started = time.perf_counter()
    blobs = []
    for p in paths:
        data = p.read_bytes()
        sha256_hex(data)
        blobs.append(data)
    read_rate = rate(n, time.perf_counter() - started)

    # Stage 2: decode + EXIF + hashes + properties + resize for the backbone.
    limits = ScanLimits()
    sample = blobs[: min(n, 400)]
    started = time.perf_counter()
    arrays = [scan_bytes(b, limits, 224)[1] for b in sample]
    decode_rate_1 = rate(len(sample), time.perf_counter() - started)
    with ThreadPoolExecutor(2) as pool:
        started = time.perf_counter()
        list(pool.map(lambda b: scan_bytes(b, limits, 224), sample))
        decode_rate_2 = rate(len(sample), time.perf_counter() - started)

    # Reference: raw inference on decoded arrays, with the Keras model and, where the audit embeds with it, the
    # LiteRT copy (backbones/lite.py); the audit is compared with the runtime it used.
    batch = np.stack([a for a in arrays if a is not None][: args.batch_size])
    raw_rates = {"keras": raw_inference(resolve_backbone(args.backbone, args.weights, True, args.precision), batch)}
    lite_side = resolve_backbone(args.backbone, args.weights, True, args.precision)
    if lite.applies(has_gpu=False) and lite.use_copy(lite_side, work / "lite", os.cpu_count() or 1):
        raw_rates["litert"] = raw_inference(lite_side, batch)

    # The whole audit, first run on an empty cache, then again on the unchanged dataset.
    cache = work / "cache"
    first_s, report = run_audit(args.dataset, manifest, cache, work / "out1", args)
    again_s, _ = run_audit(args.dataset, manifest, cache, work / "out2", args)
    timings = report["timings_s"]
    near = next(c for c in report["checks"] if c["id"] == "near_duplicates")
    calibration = (near["metrics"].get("detection_quality") or {}).get("calibration_copies", "no")
    decision_s = timings.get("check:exact_duplicates", float("nan"))  # the duplicate decision and its graph

    runtime = report["backbone"].get("runtime", "keras")
    raw_rate = raw_rates[runtime]
    audit_rate = rate(n, first_s)
    embed_stage_rate = rate(n, timings["decode_embed_s"])
    rows = [
        ("read + sha256", f"{read_rate:,.0f}", f"{read_rate / raw_rate:.1f}×"),
        ("decode + hashes + properties (1 thread)", f"{decode_rate_1:,.0f}", f"{decode_rate_1 / raw_rate:.1f}×"),
        ("decode + hashes + properties (2 threads)", f"{decode_rate_2:,.0f}", f"{decode_rate_2 / raw_rate:.1f}×"),
        *((f"raw {args.backbone} inference, {name}" + (" (reference: the audit's runtime)" if name == runtime else ""),
           f"{value:,.1f}", f"{value / raw_rate:.2f}") for name, value in raw_rates.items()),
        ("embedding stage in the audit (decode pipelined with inference)", f"{embed_stage_rate:,.1f}", f"{embed_stage_rate / raw_rate:.2f}"),
        (f"whole first audit incl. start-up and {calibration} calibration copies", f"{audit_rate:,.1f}", f"{audit_rate / raw_rate:.2f}"),
        (f"duplicate decision (search, {calibration} calibration copies, rule, groups)", f"{rate(n, decision_s):,.0f}",
         f"{rate(n, decision_s) / raw_rate:.1f}×"),
    ]
    print("\n| stage | images/s | ratio to raw inference |\n|---|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nfirst audit {first_s:.1f} s, re-run on the unchanged dataset {again_s:.1f} s: "
          f"{first_s / again_s:.1f}× faster (target ≥ 20×)")


if __name__ == "__main__":
    main()
