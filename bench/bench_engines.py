"""The embedding stage (read → decode → embed) on the local engine and on the Ray engine (a local Ray),
as ratios to the backbone's raw inference measured in the same run, and as CPU-seconds per image (what
a cluster's size and cost follow from; far less sensitive than wall time to a busy shared machine).

    python bench/bench_engines.py [--dataset ../shared/datasets/cats_and_dogs_filtered] [--images 240]
                                  [--workers 2] [--out FILE.json]

Needs the ray extra (pip install -e '.[ray]'). Measured, each on the same images with a fresh cache:
  raw     backbone.embed on arrays decoded beforehand (batches of 32, model built and warmed up);
  local   encode_dataset with the local engine (threads decode, the backbone on this thread);
  ray     encode_dataset with the Ray engine on a local Ray with `--workers` CPUs (one actor per CPU,
          each decoding and embedding with one thread). Its fixed cost (starting the actors, building
          a model in each) is measured on a run of 2 × workers images and reported apart.
CPU-seconds: this process's CPU time for raw and local; the actors' own CPU time (measured inside them)
for ray.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from auditor.backbones.registry import resolve_backbone  # noqa: E402
from auditor.encoding.cache import Cache  # noqa: E402
from auditor.encoding.encode import encode_dataset  # noqa: E402
from auditor.encoding.imaging import ScanLimits, scan_bytes  # noqa: E402
from auditor.engines.local import LocalEngine  # noqa: E402
from auditor.index.dataset import DatasetIndex, ImageRecord  # noqa: E402

MAX_BYTES = 64 * 2**20


def photos(dataset: Path, count: int) -> list[Path]:
    found = sorted(p for p in dataset.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    step = max(1, len(found) // count)  # spread over classes and splits, deterministically
    return found[::step][:count]


def index_of(paths: list[Path]) -> DatasetIndex:
    return DatasetIndex(root=paths[0].parent, layout="classes",
                        records=[ImageRecord(p.name, p, split="train", label=p.parent.name) for p in paths])


def timed_encode(paths: list[Path], backbone, engine, workers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as cache_dir:
        cache = Cache(Path(cache_dir))
        worker_cpu = [0.0]
        if hasattr(engine, "run"):  # sum what the workers report about their own CPU time
            run = engine.run

            def counting_run(*args, **kwargs):
                for batch in run(*args, **kwargs):
                    worker_cpu[0] += batch.worker_cpu_s
                    yield batch

            engine.run = counting_run
        cpu, wall = time.process_time(), time.perf_counter()
        encoded = encode_dataset(index_of(paths), cache, backbone, ScanLimits(), MAX_BYTES, batch_size=32,
                                 workers=workers, engine=engine)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        cache.close()
    computed = int(encoded.stats["embeddings_computed"])
    return {"images": computed, "wall_s": round(wall, 2), "driver_cpu_s": round(cpu, 2),
            "worker_cpu_s": round(worker_cpu[0], 2), "images_per_s": round(computed / wall, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=REPO.parent / "shared" / "datasets" / "cats_and_dogs_filtered")
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    dataset = args.dataset if args.dataset.is_dir() else REPO / "samples"
    paths = photos(dataset, args.images)
    backbone = resolve_backbone("efficientnet-lite0", None, offline=True, precision="float32")
    backbone.batch_shape = 32
    result: dict = {"dataset": str(dataset), "images": len(paths), "cpus": os.cpu_count(), "workers": args.workers,
                    "load_average_at_start": os.getloadavg()}

    # raw inference: decoded beforehand, model built and warmed up first
    arrays = []
    for path in paths:
        array = scan_bytes(path.read_bytes(), ScanLimits(), backbone.input_size)[1]
        if array is not None:
            arrays.append(array)
    arrays = np.stack(arrays)
    backbone.embed(arrays[:32])
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(arrays), 32):
        backbone.embed(arrays[start:start + 32])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result["raw"] = {"images": len(arrays), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                     "images_per_s": round(len(arrays) / wall, 2)}
    print("raw  ", result["raw"], flush=True)

    result["local"] = timed_encode(paths, backbone, LocalEngine(args.workers), args.workers)
    print("local", result["local"], flush=True)

    from auditor.engines.ray_engine import RayEngine

    engine = RayEngine(workers=args.workers, address="local")
    started = time.perf_counter()
    with engine.session():
        result["ray_start_s"] = round(time.perf_counter() - started, 2)
        small = 2 * args.workers
        result["ray_fixed"] = timed_encode(paths[-small:], backbone, RayEngine(args.workers, address="local"), args.workers)
        print("ray fixed cost", result["ray_fixed"], flush=True)
        result["ray"] = timed_encode(paths, backbone, RayEngine(args.workers, address="local"), args.workers)
        print("ray  ", result["ray"], flush=True)

    raw, local, ray, fixed = result["raw"], result["local"], result["ray"], result["ray_fixed"]
    ray_steady_s = ray["wall_s"] - fixed["wall_s"]
    result["ratios"] = {
        "local_to_raw": round(local["images_per_s"] / raw["images_per_s"], 3),
        "ray_to_raw": round(ray["images_per_s"] / raw["images_per_s"], 3),
        "ray_without_fixed_cost_to_raw": round((ray["images"] - fixed["images"]) / ray_steady_s / raw["images_per_s"], 3),
        "ray_to_local": round(ray["images_per_s"] / local["images_per_s"], 3),
    }
    result["cpu_s_per_image"] = {
        "raw_inference": round(raw["cpu_s"] / raw["images"], 4),
        "local_engine": round(local["driver_cpu_s"] / local["images"], 4),
        "ray_actors": round(ray["worker_cpu_s"] / ray["images"], 4),
    }
    result["load_average_at_end"] = os.getloadavg()
    print(json.dumps({k: result[k] for k in ("ratios", "cpu_s_per_image", "ray_start_s")}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
