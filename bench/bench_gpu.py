"""Raw inference and whole-audit throughput on this machine's accelerator (or its CPUs), as ratios to the
raw inference measured in the same run. One short script for a GPU machine; runs on CPUs with tiny sizes.

On a GPU machine (a Python with auditor's dependencies and a CUDA build of the Keras backend, e.g.
`pip install -e . "jax[cuda12]"` or a CUDA torch; nothing is downloaded while it runs):

    KERAS_BACKEND=jax   python bench/bench_gpu.py --out /tmp/bench_gpu_jax.json
    KERAS_BACKEND=torch python bench/bench_gpu.py --out /tmp/bench_gpu_torch.json

On CPUs, to check that it works (a minute or two):

    python bench/bench_gpu.py --images 48 --batch-sizes 8,32 --seconds 2

What it measures:
  1. raw inference: EfficientNet-Lite0 (offline ImageNet weights) on already-decoded 224×224 arrays, at each
     batch size and at float32 and the device's `auto` precision (with the embeddings' agreement: the
     lowest cosine between the two precisions' vectors of the same images);
  2. the whole audit (`audit DIR`, a fresh cache) of a dataset made from samples/ (each image a distinct
     random crop, so the cache cannot deduplicate), and its embedding stage alone (read + decode + embed),
     as images/s and as ratios to (1) at the batch size the audit chose; by default twice, each from a fresh
     cache and in a process of its own (cold, as a user's first audit): the local engine decoding in threads,
     then in processes (`--decoding`); under JAX, once more from a fresh cache holding only the compiled
     models the previous audit kept;
  3. the same audit again on the unchanged dataset (everything from the cache);
  4. with `--profile-checks FILE`, where the checks' time goes: every check profiled cold on the last audit's cache.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Each whole audit runs in a process of its own while this one holds the raw-inference model: JAX would otherwise
# reserve 75 % of the GPU's memory in each.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.4")

from auditor.engines.device import CPU_ONLY, backend_can_use_gpus, batch_size_for, local_devices, precision_for  # noqa: E402


def backend_devices() -> list[str]:
    """The devices the Keras backend itself sees (the proof that the accelerator is used)."""
    from auditor.backbones.keras_import import import_keras

    keras = import_keras()
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            return [f"{d.platform}:{getattr(d, 'device_kind', d)}" for d in jax.devices()]
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return [f"cuda:{torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
            return ["cpu"]
        if backend == "tensorflow":
            import tensorflow as tf

            from auditor.backbones.keras_import import quiet_native_stderr

            with quiet_native_stderr():  # "failed call to cuInit" on machines without a GPU
                return [f"{d.device_type.lower()}:{d.name}" for d in tf.config.list_physical_devices()]
    except Exception as exc:  # the report says what failed rather than stopping the bench
        return [f"unknown ({type(exc).__name__}: {exc})"]
    return ["unknown"]


def raw_inference(precision: str, batch_size: int, seconds: float, images: np.ndarray,
                  backbone_name: str = "efficientnet-lite0") -> tuple[float, np.ndarray, float]:
    """Images/s of backbone.embed on decoded uint8 arrays (after warm-up), the vectors of `images`, and the
    one-off cost of building and compiling the model (the warm-up's time beyond its two batches' share).
    ResNet50 runs with random weights (its ImageNet weights cannot be fetched offline): its speed is the
    same, its vectors mean nothing."""
    from auditor.backbones.registry import resolve_backbone

    weights = "none" if backbone_name == "resnet50" else None
    backbone = resolve_backbone(backbone_name, weights, offline=True, precision=precision)
    backbone.batch_shape = batch_size
    batch = np.resize(images, (batch_size, *images.shape[1:]))
    started = time.perf_counter()
    for _ in range(2):
        backbone.embed(batch)  # builds, compiles and warms up
    warm_up_s = time.perf_counter() - started
    done, started = 0, time.perf_counter()
    while True:
        backbone.embed(batch)
        done += batch_size
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and done >= 3 * batch_size:
            break
    vectors = backbone.embed(images[:batch_size]) if len(images) >= batch_size else backbone.embed(images)
    return done / elapsed, vectors, warm_up_s - 2 * batch_size / (done / elapsed)


def make_photo(job: tuple[Path, Path, int]) -> None:
    """A distinct image: a random crop of a sample photo, resized to a typical web-photo size, as JPEG."""
    from PIL import Image

    source, destination, seed = job
    rng = random.Random(seed)
    with Image.open(source) as image:
        image = image.convert("RGB")
        width, height = image.size
        left, top = rng.randint(0, width // 5), rng.randint(0, height // 5)
        right, bottom = width - rng.randint(0, width // 5), height - rng.randint(0, height // 5)
        crop = image.crop((left, top, right, bottom)).resize((rng.randint(320, 640), rng.randint(240, 480)))
        destination.parent.mkdir(parents=True, exist_ok=True)
        crop.save(destination, "JPEG", quality=90)


def make_dataset(root: Path, count: int) -> int:
    """`count` distinct JPEGs in train/<class>/ and val/<class>/ (80/20), from samples/'s photos."""
    sources = [p for p in sorted((REPO / "samples").glob("*/*/*.jpg")) if _decodes(p)]  # samples/ plants a broken one
    jobs = []
    for i in range(count):
        source = sources[i % len(sources)]
        split = "val" if i % 5 == 4 else "train"
        jobs.append((source, root / split / source.parent.name / f"{i:07d}.jpg", i))
    # spawn, not fork: the Keras backend (JAX especially) already runs threads in this process
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(make_photo, jobs, chunksize=32))
    return count


def _decodes(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.convert("RGB")
        return True
    except OSError:
        return False


def run_audit(dataset: Path, cache: Path, engine: str, workers: int) -> tuple[float, dict, dict]:
    """One whole audit in this process: (seconds, encode stats, report timings)."""
    from auditor.runner import audit
    from auditor.settings import resolve

    config = resolve(dataset, {"backbone": "efficientnet-lite0", "offline": True, "cache_dir": cache,
                               "engine": engine, "workers": workers}).config
    started = time.perf_counter()
    report, ctx = audit(dataset, config)
    return time.perf_counter() - started, dict(ctx.encoded.stats), dict(report.timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=None, help="Images in the audited dataset (default: 10000 on GPUs, 96 on CPUs).")
    parser.add_argument("--batch-sizes", default=None, help="Raw-inference batch sizes, e.g. 64,256,512 (default for the device).")
    parser.add_argument("--seconds", type=float, default=None, help="Timing per raw-inference measurement (default 8 on GPUs, 3 on CPUs).")
    parser.add_argument("--engine", default="local", choices=["local", "ray"],
                        help="Engine for the whole audit (ray: a local Ray with --workers CPUs and the GPUs; its start-up "
                             "of about a minute is part of the figures, so give it thousands of images).")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="Decoding threads (local) or local Ray CPUs.")
    parser.add_argument("--resnet50-batch-sizes", default=None,
                        help="Raw-inference batch sizes for ResNet50 (random weights: speed only); default the "
                             "device's audit batch size; 0 skips it.")
    parser.add_argument("--skip-audit", action="store_true", help="Raw inference only.")
    parser.add_argument("--decoding", default="both", choices=["both", "threads", "processes", "auto"],
                        help="How the local engine decodes in the whole audit: both (threads, then processes, each "
                             "from a fresh cache), one of them, or auto (what `audit` would pick here).")
    parser.add_argument("--out", type=Path, default=None,
                        help="Write the results as JSON here too (rewritten after every measurement, so a run "
                             "stopped at a time limit keeps what it measured).")
    parser.add_argument("--profile-checks", type=Path, default=None,
                        help="After the audits, profile every check (cold: no check results or pixel evidence "
                             "cached) in a process of its own and write the top functions here.")
    parser.add_argument("--workdir", type=Path, default=None, help="Where the dataset and caches go (default: a temp folder).")
    args = parser.parse_args()

    found = local_devices()
    devices = found if found.gpus and backend_can_use_gpus() else CPU_ONLY
    gpu = devices.gpus > 0
    images = args.images or (10000 if gpu else 96)
    seconds = args.seconds or (8.0 if gpu else 3.0)
    sizes = [int(s) for s in args.batch_sizes.split(",")] if args.batch_sizes else ([64, 256, 512] if gpu else [8, 32])
    auto_precision = precision_for(devices, "auto")
    audit_batch = batch_size_for(devices, None)
    result: dict = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"), "nvidia_smi": devices.describe(),
                    "backend_devices": backend_devices(), "auto_precision": auto_precision, "auto_batch_size": audit_batch},
        "raw_inference": [],
    }
    print(json.dumps(result["machine"], indent=1), flush=True)
    if found.gpus and not gpu:
        print(f"warning: {found.describe()} found, but the {result['machine']['keras_backend']} backend here has no CUDA "
              "packages: measuring CPUs. Install a CUDA build (e.g. jax[cuda12]).", flush=True)

    rng = np.random.default_rng(0)
    probe = rng.integers(0, 256, (max(sizes + [audit_batch]), 224, 224, 3), dtype=np.uint8)
    sample_photos = _decoded_samples(max(sizes + [audit_batch]))
    precisions = ["float32"] + ([auto_precision] if auto_precision != "float32" else [])
    resnet_sizes = ([int(s) for s in args.resnet50_batch_sizes.split(",") if int(s) > 0]
                    if args.resnet50_batch_sizes else [audit_batch])
    runs = [("efficientnet-lite0", size) for size in sorted(set(sizes + [audit_batch]))]
    runs += [("resnet50", size) for size in resnet_sizes]
    for backbone_name, size in runs:
        vectors = {}
        for precision in precisions:
            rate, vectors[precision], build_s = raw_inference(precision, size, seconds,
                                                              sample_photos if len(sample_photos) else probe,
                                                              backbone_name)
            row = {"backbone": backbone_name, "batch_size": size, "precision": precision,
                   "images_per_s": round(rate, 1), "build_and_compile_s": round(build_s, 2)}
            if precision != "float32" and backbone_name != "resnet50":  # random weights: agreement means nothing
                a, b = vectors["float32"], vectors[precision]
                cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
                row["min_cosine_to_float32"] = round(float(cosine.min()), 5)
            result["raw_inference"].append(row)
            _save(args.out, result)
            print(f"raw inference  {backbone_name:18s} batch {size:4d}  {precision:8s}  {rate:9.1f} images/s"
                  + (f"  (min cosine to float32: {row['min_cosine_to_float32']})" if "min_cosine_to_float32" in row else ""),
                  flush=True)
    if args.skip_audit:
        return 0

    reference_row = next(r for r in result["raw_inference"] if r["backbone"] == "efficientnet-lite0"
                         and r["batch_size"] == audit_batch and r["precision"] == auto_precision)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-", dir=args.workdir) as work:
        work = Path(work)
        started = time.perf_counter()
        make_dataset(work / "data", images)
        print(f"dataset: {images} distinct JPEGs made in {time.perf_counter() - started:.1f} s", flush=True)
        modes = ["threads", "processes"] if args.decoding == "both" else [args.decoding]
        runs = [(mode, work / f"cache-{mode}", None) for mode in modes]
        if result["machine"]["keras_backend"] == "jax":  # the compiled models JAX keeps in the cache folder
            runs.append((modes[-1], work / "cache-compiled-models-kept", work / f"cache-{modes[-1]}" / "compiled-models"))
        result["audits"] = {}
        for index, (mode, cache, compiled_from) in enumerate(runs):
            again = index == len(modes) - 1  # the audit of an unchanged dataset, everything from the cache
            first_s, stats, timings, second_s = audit_in_a_fresh_process(mode, work / "data", cache, args.engine,
                                                                         args.workers, compiled_from, again)
            key = mode if compiled_from is None else f"{mode}, compiled models kept"
            result["audits"][key] = audit_row(args, images, audit_batch, auto_precision, reference_row, first_s,
                                              stats, timings)
            if second_s is not None:
                result["audits"][key].update(second_audit_s=round(second_s, 2),
                                             second_run_speedup=round(first_s / second_s, 1))
            _save(args.out, result)
            print(f"decoding in {key}:", json.dumps(result["audits"][key], indent=1), flush=True)
        if args.profile_checks is not None:
            checks_s = profile_checks(work / "data", work / f"cache-{modes[-1]}", args.workers, args.profile_checks)
            print(f"checks profiled ({checks_s:.1f} s): {args.profile_checks}", flush=True)
    print(json.dumps(result["audits"], indent=1), flush=True)
    _save(args.out, result)
    return 0


def audit_in_a_fresh_process(mode: str, dataset: Path, cache: Path, engine: str, workers: int,
                             compiled_from: Path | None, again: bool):
    """A user's first audit: in a process of its own, so nothing compiled or loaded by an earlier measurement
    helps it (JAX keeps compiled models in memory, and the folder of its persistent cache is fixed once set).
    `compiled_from`: a compiled-models folder copied into the fresh cache first (a later audit of other images)."""
    if compiled_from is not None:
        shutil.copytree(compiled_from, cache / "compiled-models")
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_audit_job, mode, dataset, cache, engine, workers, again).result()


def profile_checks(dataset: Path, cache: Path, workers: int, out_path: Path) -> float:
    """Where the checks' time goes on this machine: cProfile of every check in a process of its own, on the audited
    dataset's cache with its check results and pixel evidence removed (the checks as a first audit runs them;
    embeddings and calibration copies are read back). Writes the top functions by cumulative and by own time
    (this thread's: work on other threads and processes shows as waiting) to `out_path`; returns the checks' s."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        seconds, text = pool.submit(_profile_job, dataset, cache, workers).result()
    out_path.write_text(text)
    return seconds


def _profile_job(dataset: Path, cache: Path, workers: int) -> tuple[float, str]:
    import cProfile
    import io
    import pstats
    import sqlite3

    from auditor.encoding import result_cache
    from auditor.runner import prepare, run_checks
    from auditor.settings import resolve

    with sqlite3.connect(cache / "cache.sqlite3") as db:
        db.execute("DELETE FROM check_results")
    shutil.rmtree(cache / "pixel-evidence", ignore_errors=True)  # the duplicate decision computed, not read
    result_cache.inputs_key = lambda ctx: None  # no check result is stored or read back
    config = resolve(dataset, {"backbone": "efficientnet-lite0", "offline": True, "cache_dir": cache,
                               "workers": workers}).config
    ctx = prepare(dataset, config)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    run_checks(ctx)
    profiler.disable()
    seconds = time.perf_counter() - started
    out = io.StringIO()
    out.write(f"checks {seconds:.2f} s; per check: "
              f"{ {k: round(v, 2) for k, v in sorted(ctx.check_seconds.items(), key=lambda kv: -kv[1])} }\n")
    for order, count in (("cumulative", 60), ("tottime", 40)):
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(count)
    return seconds, out.getvalue()


def _audit_job(mode: str, dataset: Path, cache: Path, engine: str, workers: int, again: bool):
    with decoding_in(mode):
        first_s, stats, timings = run_audit(dataset, cache, engine, workers)
        second_s = run_audit(dataset, cache, engine, workers)[0] if again else None
    return first_s, stats, timings, second_s


@contextmanager
def decoding_in(mode: str):
    """The local engine decoding in threads or processes, whatever its `auto` would pick (this script is guarded by
    `if __name__ == "__main__"`, so spawned processes may import it; `auto` only trusts auditor's own commands)."""
    from auditor.engines.local import LocalEngine

    if mode == "auto":
        yield
        return
    original = LocalEngine.decodes_in_processes
    LocalEngine.decodes_in_processes = lambda self, embeds: mode == "processes"
    try:
        yield
    finally:
        LocalEngine.decodes_in_processes = original


def audit_row(args, images: int, audit_batch: int, precision: str, reference_row: dict, first_s: float, stats: dict,
              timings: dict) -> dict:
    reference = reference_row["images_per_s"]
    embed_rate = stats["embeddings_computed"] / stats["decode_embed_s"]
    # The audit builds (and compiles, or loads compiled) its model once inside the embedding stage: without that
    # one-off cost — the model's time in the audit beyond what raw inference would take for these images — the
    # stage's rate is what a larger dataset would see. (Raw inference's own build time is no measure of it: with
    # compiled models kept the audit's build is shorter.)
    one_off_s = max(stats["inference_s"] - stats["embeddings_computed"] / reference, 0.0)
    steady_s = max(stats["decode_embed_s"] - one_off_s, 1e-9)
    steady_rate = stats["embeddings_computed"] / steady_s
    audit_rate = images / first_s
    return {
        "engine": args.engine, "workers": args.workers, "images": images, "batch_size": audit_batch,
        "precision": precision, "embeddings_computed": int(stats["embeddings_computed"]),
        "first_audit_s": round(first_s, 2),
        "hash_s": round(stats["hash_s"], 2), "decode_embed_s": round(stats["decode_embed_s"], 2),
        "inference_s": round(stats["inference_s"], 2),
        "embed_stage_images_per_s": round(embed_rate, 1), "whole_audit_images_per_s": round(audit_rate, 1),
        "embed_stage_ratio_to_raw": round(embed_rate / reference, 3),
        "model_build_in_audit_s": round(one_off_s, 2),
        "embed_stage_without_model_build_images_per_s": round(steady_rate, 1),
        "embed_stage_without_model_build_ratio_to_raw": round(steady_rate / reference, 3),
        "whole_audit_ratio_to_raw": round(audit_rate / reference, 3),
        "slowest_stages_s": dict(sorted(((k, round(v, 2)) for k, v in timings.items()), key=lambda kv: -kv[1])[:8]),
    }


def _save(out: Path | None, result: dict) -> None:
    if out is not None:
        out.write_text(json.dumps(result, indent=1))


def _decoded_samples(count: int) -> np.ndarray:
    """Real photos decoded at 224×224 (the embeddings' agreement between precisions is measured on these)."""
    from PIL import Image

    arrays = []
    for path in sorted((REPO / "samples").glob("*/*/*.jpg"))[:count]:
        try:
            with Image.open(path) as image:
                arrays.append(np.asarray(image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR), np.uint8))
        except OSError:
            continue  # samples/ holds a planted broken file
    return np.stack(arrays) if arrays else np.zeros((0, 224, 224, 3), np.uint8)


if __name__ == "__main__":
    sys.exit(main())
