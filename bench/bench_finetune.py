"""How fast does the reference head train on cached feature maps, and is the base really never run?

    python bench/bench_finetune.py [--images 1000] [--shared ../shared/datasets]

1. Seconds per epoch per 1 000 images of the reference head (Flatten → 2 × Dense(1024) … on 7×7×1280
   EfficientNet-Lite0 maps, ~65M parameters; batch 32, Adam) on these CPUs: the steady-state epoch time,
   (time of a 3-epoch run − time of a 1-epoch run) / 2, so graph tracing and start-up are left out.
   Validation (20 % as many images) is included, as in a real epoch.
2. On real photos (hymenoptera_data, through the audit's own encode pass): the maps are computed once,
   and a fine-tune afterwards calls the backbone zero times (counted by wrapping its methods).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from auditor.config import AuditConfig, FinetuneOptions  # noqa: E402
from auditor.finetune.head import array_source, reference_run, train_head  # noqa: E402
from auditor.runner import prepare  # noqa: E402


def steady_epoch_seconds(count: int, shape: tuple[int, ...], units: int) -> float:
    rng = np.random.default_rng(0)
    x = rng.random((count, *shape), dtype=np.float32).astype(np.float16)
    y = rng.integers(0, 2, count)
    xv, yv = x[: count // 5], y[: count // 5]
    times = {}
    for epochs in (1, 3):
        options = FinetuneOptions(epochs=epochs, patience=epochs, dense_units=units)
        started = time.perf_counter()
        train_head(array_source(x), y, array_source(xv), yv, shape, 2, options, seed=0)
        times[epochs] = time.perf_counter() - started
    return (times[3] - times[1]) / 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "datasets")
    args = parser.parse_args()
    from machine import describe  # the bench folder is on sys.path when a bench runs as a script

    print(describe(), flush=True)
    print(f"CPU cores: {os.cpu_count()}")
    for shape, name in (((7, 7, 1280), "EfficientNet-Lite0 maps"),):
        seconds = steady_epoch_seconds(args.images, shape, 1024)
        print(f"reference head on {name} {shape}, {args.images} train + {args.images // 5} val images: "
              f"{seconds:.1f} s per epoch = {seconds * 1000 / args.images:.1f} s per epoch per 1 000 training images")

    source = args.shared / "hymenoptera_data"
    if not source.is_dir():
        print(f"skipping the real-photo part: {source} not found")
        return
    with tempfile.TemporaryDirectory() as cache:
        config = AuditConfig(backbone="efficientnet-lite0", offline=True, cache_dir=Path(cache),
                             finetune=FinetuneOptions(epochs=2, patience=2, dense_units=1024))
        started = time.perf_counter()
        ctx = prepare(source, config)
        encode_s = time.perf_counter() - started
        stats = ctx.encoded.stats
        calls = {"embed": 0, "embed_with_maps": 0}
        backbone = ctx.backbone
        for method in calls:
            original = getattr(backbone, method)

            def counted(*a, _original=original, _name=method, **k):
                calls[_name] += 1
                return _original(*a, **k)

            setattr(backbone, method, counted)
        started = time.perf_counter()
        run = reference_run(ctx).run
        train_s = time.perf_counter() - started
        print(f"hymenoptera_data: encode pass {encode_s:.0f} s ({int(stats['feature_maps_computed'])} maps computed "
              f"with the embeddings); fine-tune {run.epochs_run} epochs on {run.train_images} images in {train_s:.0f} s "
              f"({run.seconds_per_epoch_per_1000:.1f} s per epoch per 1 000 images, tracing included); "
              f"backbone calls during the fine-tune: {calls}")
        assert calls == {"embed": 0, "embed_with_maps": 0}, "the fine-tune must not run the base"


if __name__ == "__main__":
    main()
