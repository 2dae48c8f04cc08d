"""Time of a CI gate run that adds 1 % new images to an already-audited dataset, as a ratio to the
first full audit of that dataset (target ≤ 0.1).

    python bench/bench_gate.py [--dataset ../shared/datasets/cats_and_dogs_filtered] [--existing 1000] [--gate-repeats 3]
                               [--incoming-percent 1] [--backbone efficientnet-lite0]

1. `audit EXISTING` on an empty cache (the first full audit; it fills the cache).
2. `audit DATASET --manifest incoming.csv --against existing.csv` (the gate: 1 % new images), `--gate-repeats`
   times (default 3), each from a copy of the cache as the first audit left it; ratios use the median gate.
3. `audit EXISTING + INCOMING` on a cache that holds only what the tool itself keeps there (the backbone's LiteRT
   copy, the record of a failed weight download) and no image's data: the full audit the gate stands in for, on a
   machine that has run auditor before. The first audit (1.) also pays for converting the backbone (TensorFlow's
   import, the model's build, the conversion: once per cache), which neither the gate nor this audit does, so the
   ratios to this one are the fair ones; both are printed.
Both run as subprocesses like CI would; the ratio is given for wall time (process start, imports and
model load included), for the children's CPU time (user + system: less sensitive to other work on a
shared machine, but the first audit embeds on every core and the gate mostly on one, so it reads lower
than the wall ratio on an idle machine) and for the audit's own `timings_s.total`. Compare ratios, not
seconds: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from auditor.backbones.keras_import import COMPILED_MODELS  # noqa: E402
from auditor.backbones.lite import LITE_DIRECTORY  # noqa: E402
from auditor.backbones.registry import DOWNLOAD_MEMO  # noqa: E402
from auditor.config import AuditConfig  # noqa: E402
from auditor.index.dataset import load_dataset  # noqa: E402


# What a cache folder holds that belongs to the tool, not to any image: kept from run to run on a machine.
TOOL_FILES = (LITE_DIRECTORY, COMPILED_MODELS, DOWNLOAD_MEMO)


def write_manifest(records, destination: Path) -> None:
    with destination.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        for r in records:
            writer.writerow([str(r.abspath), r.label, r.split])


def run(arguments: list[str], out: Path) -> tuple[float, float, dict, int]:
    """(wall s, CPU s of the child, its report, exit code)."""
    command = [sys.executable, "-m", "auditor", "audit", *arguments, "--out", str(out), "--format", "json", "-q"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(command, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if completed.returncode > 1:
        raise SystemExit(f"audit failed with exit code {completed.returncode}: {' '.join(command)}")
    return wall, cpu, json.loads((out / "report.json").read_text()), completed.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=REPO.parent / "shared" / "datasets" / "cats_and_dogs_filtered")
    parser.add_argument("--existing", type=int, default=1000, help="images in the already-audited dataset")
    parser.add_argument("--incoming-percent", type=float, default=1.0)
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--gate-repeats", type=int, default=3,
                        help="gate runs, each from the first audit's cache; the ratios use their median")
    args = parser.parse_args()
    from machine import describe  # the bench folder is on sys.path when a bench runs as a script

    print(describe(), flush=True)

    records = sorted(load_dataset(args.dataset, AuditConfig()).records, key=lambda r: r.path)
    incoming_n = max(1, round(args.existing * args.incoming_percent / 100))
    if args.existing + incoming_n > len(records):
        raise SystemExit(f"the dataset has only {len(records)} images")
    step = len(records) / (args.existing + incoming_n)  # spread both over splits and classes, deterministically
    chosen = [records[int(i * step)] for i in range(args.existing + incoming_n)]
    incoming = chosen[:: max(1, len(chosen) // incoming_n)][:incoming_n]
    existing = [r for r in chosen if r not in incoming]
    work = Path(tempfile.mkdtemp(prefix="auditor-bench-gate-"))
    write_manifest(existing, work / "existing.csv")
    write_manifest(incoming, work / "incoming.csv")
    common = ["--offline", "--backbone", args.backbone, "--cache-dir", str(work / "cache")]
    print(f"dataset {args.dataset}: {len(existing)} existing + {len(incoming)} incoming images; work dir {work}")

    first_wall, first_cpu, first, _ = run([str(args.dataset), "--manifest", str(work / "existing.csv"), *common, "--exit-zero"],
                               work / "out-first")
    # Every gate run starts from the cache exactly as the first audit left it (the gate adds the new images to it).
    shutil.copytree(work / "cache", work / "cache-after-first")
    rows = [("first full audit", first_wall, first_cpu, first["timings_s"]["total"])]
    gates = []
    for repeat in range(args.gate_repeats):
        shutil.rmtree(work / "cache")
        shutil.copytree(work / "cache-after-first", work / "cache")
        gate_wall, gate_cpu, gate, gate_rc = run([str(args.dataset), "--manifest", str(work / "incoming.csv"),
                                        # existing.csv lives outside the dataset (auditor never writes into it) and
                                        # names the dataset's files by absolute path: rows outside its folder.
                                        "--against", str(work / "existing.csv"), "--allow-outside-root", *common],
                                       work / "out-gate")
        gates.append((gate_wall, gate_cpu, gate["timings_s"]["total"]))
        rows.append((f"gate {repeat + 1}: +{len(incoming)} images --against", *gates[-1]))
    # The full audit of the merged images, on a cache holding the tool's own files only (no scans, embeddings or
    # results): what the gate replaces where auditor has run before.
    tool_only = work / "cache-tool-only"
    tool_only.mkdir()
    for name in TOOL_FILES:
        kept = work / "cache-after-first" / name
        if kept.is_dir():
            shutil.copytree(kept, tool_only / name)
        elif kept.is_file():
            shutil.copy2(kept, tool_only / name)
    kept = sorted(path.name for path in tool_only.iterdir())
    print(f"the full audit's cache starts with the tool's files only: {kept}", flush=True)
    if "lite-models" not in kept and first["backbone"].get("runtime") == "litert":
        print("warning: the first audit's LiteRT copy was not found in its cache: the full audit converts again")
    write_manifest(existing + incoming, work / "merged.csv")
    full_common = [*common[:-1], str(tool_only)]
    full_wall, full_cpu, full, _ = run([str(args.dataset), "--manifest", str(work / "merged.csv"), *full_common,
                                        "--exit-zero"], work / "out-full")
    rows.append((f"full audit of all {len(existing) + len(incoming)}, tool cached", full_wall, full_cpu,
                 full["timings_s"]["total"]))
    merge = next(c for c in gate["checks"] if c["id"] == "merge")["metrics"]
    print(f"\n{'run':<36} {'wall s':>8} {'CPU s':>8} {'audit s':>8}")
    for name, wall, cpu, total in rows:
        print(f"{name:<36} {wall:8.1f} {cpu:8.1f} {total:8.1f}")
    print(f"load average now: {os.getloadavg()[0]:.1f}")
    gate_wall, gate_cpu, gate_total = (statistics.median(g[i] for g in gates) for i in range(3))
    print(f"\nratio gate / full audit of all, tool cached (median of {len(gates)} gate run(s)): "
          f"wall {gate_wall / full_wall:.3f}, CPU {gate_cpu / full_cpu:.3f}, "
          f"audit {gate_total / full['timings_s']['total']:.3f} (target ≤ 0.1); "
          f"each run's wall ratio: {', '.join(f'{g[0] / full_wall:.3f}' for g in gates)}")
    print(f"ratio gate / first audit (which also converted the backbone): wall {gate_wall / first_wall:.3f}, "
          f"CPU {gate_cpu / first_cpu:.3f}, audit {gate_total / first['timings_s']['total']:.3f}; "
          f"gate exit code {gate_rc}; embeddings computed by the gate: {merge['embeddings_computed']}")
    print("last gate's stage timings:", json.dumps(gate["timings_s"]))
    print("first stage timings:", json.dumps(first["timings_s"]))
    print("full audit (tool cached) stage timings:", json.dumps(full["timings_s"]))


if __name__ == "__main__":
    main()
