"""A million images on one machine: time and peak memory of every stage, at 10⁵ images and 10⁶ vectors.

    python bench/bench_scale.py images  [--quick] [--out DIR]   # (a) generate N crops, audit them end to end
    python bench/bench_scale.py vectors [--quick] [--n N]       # (b) N resampled vectors through search + checks

(a) generates 100 000 distinct JPEG crops (32–256 px) of the shared photos under --work (default
/work/scratch/scale; --quick: 10 000), then audits them in a child process (EfficientNet-Lite0, offline),
and reports the time of each stage from the report's own timings, the child's peak RSS, and the whole
audit as a ratio to raw inference measured in the same run (the backbone on already-decoded arrays).
`--cache DIR` reuses a warm cache: then the decode+embed stage is what the cache could not answer.

(b) needs no image: N vectors resampled from real EfficientNet-Lite0 embeddings of the shared photos
(bench/scale_data.py), written to an embedding store as the encode phase writes them, with synthetic
records and scans (4 real classes, train/val by source photo, realistic property distributions; the stand-alone
Hamming stage searches random codes with 1 % planted near copies). Every check then runs on that context, one at a time, with its wall and CPU time,
and the peak RSS of each stage (the peak is reset before each one through /proc/self/clear_refs) and of
anonymous memory (sampled; memory-mapped store pages are page cache the kernel can drop).
--quick: 10⁵ vectors. The machine is shared: compare with the CPU seconds and the ratios, not only walls.

--memory-limit 4G (either mode; root): the run inside a memory cgroup of that size, page cache included
(bench/memory_limit.py), after the files under --work (and --dataset) are evicted from the page cache; the
group's peak usage, failcnt and major page faults are printed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

SHARED = REPO.parent / "shared" / "datasets"
EMBEDDINGS_OF_SHARED = "shared_photos_effnet.npz"  # (vectors, labels), made on first use (3 397 photos)


# Memory and time -------------------------------------------------------------------------------


def _status(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


class Meter:
    """Wall time, CPU time, peak RSS (VmHWM) and peak anonymous RSS (sampled every 50 ms) of a stage."""

    def __init__(self):
        self.rows: list[dict] = []

    def run(self, name: str, fn, *args, **kwargs):
        reset_peak()
        peak_anon = [_status("RssAnon")]
        stop = threading.Event()

        def sample():
            while not stop.wait(0.05):
                peak_anon[0] = max(peak_anon[0], _status("RssAnon"))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cpu, wall = time.process_time(), time.perf_counter()
        error = None
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # a crashing stage is a row, not the end of the bench
            result, error = None, f"{type(exc).__name__}: {exc}"
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        stop.set()
        sampler.join()
        row = {"stage": name, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
               "peak_rss_gb": round(_status("VmHWM") / 2**30, 3), "peak_anon_gb": round(peak_anon[0] / 2**30, 3),
               "anon_after_gb": round(_status("RssAnon") / 2**30, 3)}
        if error:
            row["error"] = error
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        return result


def table(rows: list[dict], reference_s: float | None = None, reference_name: str = "") -> str:
    head = "| stage | wall s | CPU s | peak RSS GB | peak anon GB |" + (f" wall / {reference_name} |" if reference_s else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        extra = f" {r['wall_s'] / reference_s:.3f} |" if reference_s else ""
        lines.append(f"| {r['stage']}{' (' + r['error'] + ')' if r.get('error') else ''} | {r['wall_s']} | "
                     f"{r['cpu_s']} | {r['peak_rss_gb']} | {r['peak_anon_gb']} |{extra}")
    return "\n".join(lines)


# Real embeddings of the shared photos ---------------------------------------------------------


def shared_embeddings(work: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(vectors, labels, names) of the 3 397 shared photos, EfficientNet-Lite0 offline (computed once, kept)."""
    path = work / EMBEDDINGS_OF_SHARED
    if not path.exists():
        from auditor.backbones.registry import resolve_backbone
        from auditor.encoding.imaging import ScanLimits, scan_bytes
        from scale_data import source_photos

        backbone = resolve_backbone("efficientnet-lite0", None, True, "auto")
        photos = source_photos(SHARED)
        vectors = []
        for start in range(0, len(photos), 32):
            arrays = [scan_bytes(p.read_bytes(), ScanLimits(), backbone.input_size)[1] for p, _ in photos[start:start + 32]]
            vectors.append(backbone.embed(np.stack(arrays)))
        np.savez(path, vectors=np.concatenate(vectors), labels=np.array([label for _, label in photos]))
    data = np.load(path)
    return data["vectors"], data["labels"], []


# (b) vectors ----------------------------------------------------------------------------------


def synthetic_context(n: int, work: Path, seed: int = 0):
    """An AuditContext of n images whose embeddings are in an embedding store (written in batches, as the
    encode phase writes them), with synthetic records and scans."""
    from scale_data import resampled_vectors

    from auditor.config import AuditConfig
    from auditor.context import AuditContext
    from auditor.encoding.cache import Cache
    from auditor.encoding.embedding_store import StoredEmbeddings
    from auditor.encoding.encode import Encoded
    from auditor.encoding.imaging import ImageScan
    from auditor.index.dataset import DatasetIndex, ImageRecord

    base, base_labels, _ = shared_embeddings(work)
    rng = np.random.default_rng(seed)
    cache_dir = work / f"vectors-cache-{n}"
    cache = Cache(cache_dir)
    model = f"bench-resampled|{n}|{seed}"
    store = cache.embedding_store(model)
    shas = [hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in range(n)]
    store.load(shas, migrate=False)
    # Which base photo each vector was resampled from sets its label and split.
    which = np.random.default_rng(seed + 1).integers(0, len(base), n)
    if len(store) < n:
        vectors = resampled_vectors(base, n, seed)  # float16 unit rows
        missing = [i for i, s in enumerate(shas) if s not in store]
        for start in range(0, len(missing), 4096):
            part = missing[start:start + 4096]
            store.put([shas[i] for i in part], vectors[part].astype(np.float32))
        del vectors
    records, scans = [], {}
    widths = np.exp(rng.uniform(np.log(32), np.log(257), n)).astype(int)
    heights = np.clip((widths * np.exp(rng.normal(0, 0.2, n))).astype(int), 32, None)
    brightness = rng.normal(115, 25, n)
    contrast = np.abs(rng.normal(55, 12, n))
    sharpness = np.exp(rng.normal(6.5, 1.0, n))
    colourfulness = np.abs(rng.normal(35, 12, n))
    entropy = np.clip(rng.normal(7.3, 0.3, n), 1, 8)
    quality = rng.integers(70, 96, n)
    for i, sha in enumerate(shas):
        label = str(base_labels[which[i]])
        split = "val" if which[i] % 5 == 0 else "train"
        path = f"{split}/{label}/img_{i:07d}.jpg"
        records.append(ImageRecord(path, work / path, split, label))
        scans[sha] = ImageScan(sha256=sha, file_size=int(widths[i] * heights[i] * 0.4), format="JPEG", mode="RGB",
                               width=int(widths[i]), height=int(heights[i]), pixel_hash=sha,
                               properties={"brightness": float(brightness[i]), "contrast": float(contrast[i]),
                                           "sharpness": float(sharpness[i]), "colourfulness": float(colourfulness[i]),
                                           "entropy": float(entropy[i]), "greyscale_as_rgb": False,
                                           "jpeg_quality": int(quality[i]), "camera_model": None})
    index = DatasetIndex(root=work, layout="splits", records=records)
    encoded = Encoded(record_sha=list(shas), read_problems={}, scans=scans, embeddings=StoredEmbeddings(store),
                      thumbnail_folder=work)
    backbone = type("ResampledBackbone", (), {"dim": base.shape[1], "cache_key": model, "name": "resampled",
                                              "input_size": 224})()
    config = AuditConfig(calibration_images=0, seed=seed)
    return AuditContext(index=index, config=config, encoded=encoded, backbone=backbone, cache=cache)


def synthetic_codes(n: int, seed: int = 0, near_copy_share: float = 0.01) -> np.ndarray:
    """(n, 8) uint8 64-bit codes for the Hamming search alone: random, except a share of near copies (the code of
    the previous image with 4 bits flipped)."""
    rng = np.random.default_rng(seed + 3)
    codes = rng.integers(0, 2**63, n, dtype=np.int64)
    for i in np.flatnonzero(rng.random(n) < near_copy_share):
        if i:
            codes[i] = codes[i - 1] ^ np.bitwise_or.reduce(np.int64(1) << rng.integers(0, 62, 4))
    return codes.view(np.uint8).reshape(n, 8)


def add_thumbnails(ctx, seed: int = 0, block: int = 65_536) -> None:
    """Synthetic 32×32 grey thumbnails for the duplicate decision, drawn from each image's own vector: a fixed
    random projection to 8×8, upsampled, plus pixel noise, so images with close vectors get alike thumbnails
    (correlation follows cosine), as copies' thumbnails do. Held in one table, as an audit's encode phase holds them."""
    from auditor.encoding.embedding_store import to_float32
    from auditor.encoding.thumbnails import Thumbnails, allocate

    unit = ctx.unit_matrix
    rng = np.random.default_rng(seed + 7)
    projection = rng.standard_normal((unit.shape[1], 64)).astype(np.float32) / np.sqrt(unit.shape[1])
    shas = ctx.embedded_shas
    thumbnails = allocate(len(shas), ctx.encoded.thumbnail_folder)
    for start in range(0, len(shas), block):
        low = to_float32(np.asarray(unit[start:start + block])) @ projection  # (b, 64), about N(0, 1/√d)
        low = (low - low.mean(axis=1, keepdims=True)) / np.maximum(low.std(axis=1, keepdims=True), 1e-6)
        grey = np.repeat(np.repeat(low.reshape(-1, 8, 8), 4, axis=1), 4, axis=2) * 40 + 128
        grey += rng.normal(0, 6, grey.shape)
        thumbnails[start:start + block] = np.clip(grey, 0, 255).astype(np.uint8)
    ctx.encoded.thumbnails = Thumbnails(list(shas), thumbnails)


BOUNDED_CHECKS = ("integrity", "class_balance", "image_quality", "split_shift", "shortcuts", "outliers")


def run_vectors(args) -> None:
    from auditor.similarity import neighbours

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    n = args.n or (100_000 if args.quick else 1_000_000)
    meter = Meter()
    ctx = meter.run(f"build context: {n} records + scans + store", synthetic_context, n, work)
    meter.run("unit_matrix (store → one memory-mapped slice; compacts once)", lambda: ctx.unit_matrix)
    meter.run("k-NN graph of ctx.unit_matrix (shared by the searches of outliers)", neighbours.knn, ctx.unit_matrix, 11)
    quality = meter.run("recall of the search (exact search on a sample)", neighbours.search_quality, ctx.unit_matrix)
    print(json.dumps(quality.to_dict()), flush=True)
    codes = None
    from auditor.similarity.neighbours import hamming_pairs

    if args.no_hamming:
        return _run_checks(args, ctx, meter, n, quality)
    codes = meter.run("random pHash codes, 1 % near copies", synthetic_codes, n)
    hamming_quality: list = []
    pairs = meter.run("Hamming range search (pHash ≤ 6)", hamming_pairs, codes, 6, None, hamming_quality)
    if pairs is not None:
        print(json.dumps({"hamming_pairs": len(pairs), **hamming_quality[0].to_dict()}), flush=True)
    _run_checks(args, ctx, meter, n, quality)


def _print_memo_use(ctx, when: str) -> None:
    """How much pixel evidence came from the bench's cache (one per n in --work, kept between runs): a run that
    finds its pixel evidence there is not a cold run, and its decision time says little about a first audit."""
    decision = ctx.__dict__.get("duplicate_decision")
    memo = decision.data.memo if decision is not None else None
    if memo is not None:
        print(json.dumps({"pixel_memo": when, "reused": memo.reused, "computed": memo.computed}), flush=True)


def _run_checks(args, ctx, meter, n, quality) -> None:
    from auditor.checks import CHECKS

    work = Path(args.work)
    checks = [c for c in (args.checks.split(",") if args.checks else BOUNDED_CHECKS)]
    if {"near_duplicates", "exact_duplicates", "leakage"} & set(checks):
        meter.run("synthetic thumbnails (one table, from each vector)", add_thumbnails, ctx)
        # The checks that read the duplicate decision share it and the graph built from it; measured apart so that
        # time and memory can be told apart (the first such check would otherwise carry both).
        meter.run("duplicate decision (candidates, calibration, rule, judged pairs)", lambda: ctx.duplicate_decision)
        _print_memo_use(ctx, "after the decision")
        meter.run("duplicate graph (edges, groups without chains)", lambda: ctx.duplicate_graph)
        _print_memo_use(ctx, "after the graph (pairs judged on demand included)")
    results = {}
    for check_id in checks:
        evidence = meter.run(f"check {check_id}", CHECKS[check_id].compute, ctx)
        if evidence is not None:
            # Judged by the default policy, as the audit does: some checks leave the wording to the judge (their
            # evidence's own summary is empty because every sentence depends on a threshold).
            judged = CHECKS[check_id].result(evidence, ctx.config.policy)
            results[check_id] = {"status": judged.status.value, "summary": judged.summary[:300],
                                 "findings": len(judged.findings)}
            if evidence.metrics.get("search"):
                results[check_id]["search"] = evidence.metrics["search"]
            if evidence.metrics.get("hash_search"):
                results[check_id]["hash_search"] = evidence.metrics["hash_search"]
            if (evidence.metrics.get("chained") or {}).get("split"):
                results[check_id]["chained_split"] = evidence.metrics["chained"]["split"]
    print(json.dumps(results, indent=1))
    check_rows = [r for r in meter.rows if r["stage"].startswith("check ")]
    total = sum(r["wall_s"] for r in check_rows)
    print(f"\n{n} vectors; checks {', '.join(checks)}: {total:.1f} s wall, "
          f"{sum(r['cpu_s'] for r in check_rows):.1f} s CPU in all (the k-NN graph above is shared, counted once)\n")
    print(table(meter.rows))
    (work / f"bench_vectors_{n}.json").write_text(json.dumps({"rows": meter.rows, "search_quality": quality.to_dict() if quality else None,
                                                              "results": results}, indent=1))


# (a) images -----------------------------------------------------------------------------------


def raw_inference_rate(images: Path, input_size: int, seconds: float = 60.0, runtime: str = "keras") -> float:
    """Images per second of the backbone alone on already-decoded arrays (the reference), at the input
    size the audit chose for these images (small images are embedded at 96 px, not 224), with the runtime the
    audit used (`backbone.runtime` in its report: "litert" for its LiteRT copy, made here in a temporary folder)."""
    import tempfile

    from auditor.backbones import lite
    from auditor.backbones.registry import resolve_backbone
    from auditor.encoding.imaging import ScanLimits, scan_bytes

    backbone = resolve_backbone("efficientnet-lite0", None, True, "auto")
    backbone.input_size = input_size
    backbone.batch_shape = 32
    files = sorted(images.rglob("*.jpg"))[:32]
    batch = np.stack([scan_bytes(f.read_bytes(), ScanLimits(), backbone.input_size)[1] for f in files])
    with tempfile.TemporaryDirectory() as copies:
        if runtime == "litert" and not lite.use_copy(backbone, Path(copies), os.cpu_count() or 1):
            raise RuntimeError("the audit embedded with its LiteRT copy, which could not be made here")
        backbone.embed(batch)
        started, done = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            backbone.embed(batch)
            done += len(batch)
    return done / (time.perf_counter() - started)


def run_images(args) -> None:
    from scale_data import generate_images

    work = Path(args.work)
    count = args.images or (10_000 if args.quick else 100_000)
    images = Path(args.dataset) if args.dataset else work / f"images{count // 1000}k{f'-{args.side}px' if args.side else ''}"
    if args.dataset:
        count = sum(1 for _ in images.rglob("*.jpg"))
        print(f"dataset {images}: {count} images", flush=True)
    else:
        started = time.perf_counter()
        written = generate_images(SHARED, images, count, seed=0, workers=2, side=args.side)
        print(f"dataset {images}: {written} images written in {time.perf_counter() - started:.0f} s", flush=True)
    cache = Path(args.cache) if args.cache else work / f"cache-{images.name}-{int(time.time())}"
    out = work / f"report-{images.name}"
    command = [sys.executable, "-m", "auditor", "audit", str(images), "--cache-dir", str(cache), "--out", str(out),
               "--format", "json", "--exit-zero", "-q", "--backbone", "efficientnet-lite0", "--offline"]
    if args.checks:
        command += ["--checks", args.checks]
    started = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True)
    audit_s = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB on Linux
    if done.returncode not in (0, 1):
        print(done.stderr[-3000:])
    report = json.loads((out / "report.json").read_text())
    input_size = int(report["backbone"]["input_size"])
    # The reference is measured after the audit (so at the size it chose) and twice, around a pause-free
    # minute each, to average out other work on the machine.
    runtime = report["backbone"].get("runtime", "keras")
    rate_before, rate_after = (raw_inference_rate(images, input_size, runtime=runtime) for _ in range(2))
    timings = report.get("timings_s", {})
    raw_rate = (rate_before + rate_after) / 2
    raw_s = count / raw_rate
    rows = [(k, v) for k, v in timings.items()]
    print(f"\n{count} images at {input_size} px input; raw inference ({runtime}) {rate_before:.1f} / {rate_after:.1f} images/s before / after "
          f"(→ {raw_s:.0f} s for the dataset); whole audit {audit_s:.0f} s = {audit_s / raw_s:.2f}× raw inference; "
          f"child peak RSS {peak_gb:.2f} GB\n")
    print("| stage | seconds | / raw inference of the dataset |\n|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {seconds / raw_s:.3f} |")
    checks = {c["id"]: c["status"] for c in report["checks"]}
    (work / f"bench_images_{count}.json").write_text(json.dumps(
        {"images": count, "audit_s": audit_s, "raw_inference_ips": [rate_before, rate_after], "peak_rss_gb": peak_gb,
         "timings_s": timings, "statuses": checks, "returncode": done.returncode}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("images", "vectors"))
    parser.add_argument("--quick", action="store_true", help="10 000 images / 10⁵ vectors")
    parser.add_argument("--work", default="/work/scratch/scale", help="where data, caches and results go")
    parser.add_argument("--n", type=int, default=None, help="(vectors) how many")
    parser.add_argument("--images", type=int, default=None, help="(images) how many")
    parser.add_argument("--dataset", default=None, help="(images) an existing folder to audit instead")
    parser.add_argument("--side", type=int, default=None, help="(images) every crop side × side px (e.g. 32) instead of 32–256")
    parser.add_argument("--cache", default=None, help="(images) a cache folder (default: a fresh one)")
    parser.add_argument("--no-hamming", action="store_true", help="(vectors) skip the stand-alone Hamming search stage")
    parser.add_argument("--checks", default=None, help="comma list of check ids (default: vectors: the bounded ones)")
    parser.add_argument("--memory-trace", type=float, default=0.0, metavar="SECONDS",
                        help="every SECONDS, print anonymous RSS and where the main thread is in auditor's code "
                             "(to tell which step holds memory)")
    parser.add_argument("--steps", action="store_true",
                        help="(vectors) also time the duplicate decision's steps on the main thread (step_timers.py) and "
                             "print them at the end")
    parser.add_argument("--memory-limit", default=None, metavar="SIZE",
                        help="run inside a memory cgroup of this size (e.g. 4G; page cache included; needs root): "
                             "the files under --work (and --dataset) are evicted from the page cache first")
    args = parser.parse_args()
    from machine import describe  # the bench folder is on sys.path when a bench runs as a script

    print(describe(), flush=True)
    if args.memory_limit:
        enter_memory_limit(args)
    if args.memory_trace:
        start_memory_trace(args.memory_trace)
    timers = None
    if args.steps:
        from step_timers import decision_timers

        timers = decision_timers()
    (run_images if args.what == "images" else run_vectors)(args)
    if timers is not None:
        print(timers.table(), flush=True)


def enter_memory_limit(args) -> None:
    """Evict what the run will read, move into a cgroup with the limit, and print its figures when the run ends."""
    import atexit

    from memory_limit import MemoryLimit, evict, parse_size

    try:
        size = parse_size(args.memory_limit)
    except ValueError:
        raise SystemExit(f"--memory-limit {args.memory_limit!r}: not a size. Tip: bytes, or a number with K, M, G "
                         "or T (4G, 3.5G, 512M).") from None
    limit = MemoryLimit(size)
    folders = [Path(args.work)] + ([Path(args.dataset)] if getattr(args, "dataset", None) else [])
    evicted = sum(evict(folder) for folder in folders if folder.is_dir())
    limit.enter()
    print(json.dumps({"memory_limit": limit.report(), "evicted_gb": round(evicted / 2**30, 2)}), flush=True)

    def at_exit() -> None:
        print(json.dumps({"memory_limit_at_exit": limit.report()}), flush=True)
        limit.leave()

    atexit.register(at_exit)


def start_memory_trace(every: float) -> None:
    """A daemon thread printing `memory: <s> <anon GB> <innermost auditor frames>` lines: a time series that ties
    memory growth to the code running at the time (sampled, so short peaks between samples are missed)."""
    import sys
    import traceback

    main_id = threading.main_thread().ident
    start = time.perf_counter()

    def trace():
        while True:
            time.sleep(every)
            frame = sys._current_frames().get(main_id)
            where = [f"{Path(f.filename).stem}:{f.name}:{f.lineno}" for f in traceback.extract_stack(frame)
                     if "/auditor/" in f.filename][-3:] if frame is not None else []
            print(f"memory: {time.perf_counter() - start:.0f} s {_status('RssAnon') / 2**30:.2f} GB "
                  f"{' > '.join(where)}", flush=True)

    threading.Thread(target=trace, daemon=True).start()


if __name__ == "__main__":
    main()
