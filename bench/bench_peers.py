"""A cold audit against other duplicate finders on the same images, in one run (so under the same load).

    python bench/bench_peers.py DATASET [--fastdup-python PY] [--imagededup-python PY] [--work DIR]

1. `audit DATASET` on an empty cache (every check, EfficientNet-Lite0, offline), as a user's first run.
2. fastdup (`fastdup.create(...).run()`, its defaults, 2 threads), if `--fastdup-python` names a Python that
   has it (fastdup's wheel pins its own dependencies, so it lives in a virtual environment of its own;
   SENTRY_OPT_OUT=1 keeps it offline).
Between 1 and 2, the backbone alone on already-decoded arrays (at the input size the audit chose) for 30 s:
the whole audit's throughput is also given as a ratio to that raw inference.
3. imagededup's PHash `find_duplicates` (its defaults), if `--imagededup-python` names a Python that has it.

Each runs as a child process; the table gives wall time, the child's CPU time (user + system) and its peak
RSS, and every time as a ratio to auditor's. Nothing here measures who finds the right duplicates (that
needs a ground truth; see bench_truth.py): it answers "is a cold audit as fast as the tools people already
run". The machine is shared: compare ratios from one run, and read the load average printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FASTDUP = """
import sys, fastdup
fd = fastdup.create(work_dir=sys.argv[2], input_dir=sys.argv[1])
fd.run(num_threads=2, overwrite=True)
print("components", len(fd.connected_components()[0]))
"""

IMAGEDEDUP = """
import sys
from imagededup.methods import PHash
found = PHash().find_duplicates(image_dir=sys.argv[1], recursive=True)
print("images with a duplicate", sum(1 for v in found.values() if v))
"""


def timed(command: list[str], env: dict | None = None) -> dict:
    """Wall and CPU seconds and peak RSS (GB) of one child process (its own, from wait4), and its output's tail."""
    with tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        child = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=output, stderr=subprocess.STDOUT,
                                 text=True)
        _pid, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        tail = output.read().strip().splitlines()[-3:]
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_gb": usage.ru_maxrss / 2**20,  # KiB
            "rc": child.returncode, "tail": tail}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--fastdup-python", default=None)
    parser.add_argument("--imagededup-python", default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/auditor-bench-peers"))
    args = parser.parse_args()
    from machine import describe  # the bench folder is on sys.path when a bench runs as a script

    print(describe(), flush=True)
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    images = sum(1 for p in args.dataset.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    print(f"{args.dataset}: {images} images; load average {os.getloadavg()[0]:.1f}", flush=True)

    rows = {}
    rows["auditor (cold audit, every check)"] = timed(
        [sys.executable, "-m", "auditor", "audit", str(args.dataset), "--cache-dir", str(work / "cache"),
         "--out", str(work / "report"), "--format", "json", "--exit-zero", "-q", "--offline",
         "--backbone", "efficientnet-lite0"],
        {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)})
    report = json.loads((work / "report" / "report.json").read_text())
    input_size = int(report["backbone"]["input_size"])
    sys.path.insert(0, str(REPO / "bench"))
    from bench_scale import raw_inference_rate  # the backbone alone on decoded arrays, at the audit's input size

    runtime = report["backbone"].get("runtime", "keras")
    raw_rate = raw_inference_rate(args.dataset, input_size, seconds=30.0, runtime=runtime)
    if args.fastdup_python:
        rows["fastdup (defaults)"] = timed([args.fastdup_python, "-c", FASTDUP, str(args.dataset), str(work / "fastdup")],
                                          {"SENTRY_OPT_OUT": "1"})
    if args.imagededup_python:
        rows["imagededup PHash (defaults)"] = timed([args.imagededup_python, "-c", IMAGEDEDUP, str(args.dataset)])

    reference = rows["auditor (cold audit, every check)"]["wall"]
    print(f"\nload average after: {os.getloadavg()[0]:.1f}\n")
    print("| tool | wall s | CPU s | peak RSS GB | wall / auditor's | images/s |\n|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        status = "" if row["rc"] in (0, 1) else f" (exit {row['rc']}: {' / '.join(row['tail'])})"
        print(f"| {name}{status} | {row['wall']:.0f} | {row['cpu']:.0f} | {row['peak_gb']:.2f} | "
              f"{row['wall'] / reference:.2f} | {images / row['wall']:.1f} |")
    for name, row in rows.items():
        print(f"{name}: {' / '.join(row['tail'])}")
    audit = rows["auditor (cold audit, every check)"]
    print(f"\nraw inference at {input_size} px ({runtime}): {raw_rate:.0f} images/s; the whole cold audit ran at "
          f"{images / audit['wall']:.0f} images/s = {images / audit['wall'] / raw_rate:.2f} of raw inference; "
          f"its stages: {json.dumps(report.get('timings_s', {}))}")


if __name__ == "__main__":
    main()
