"""Which precision is faster on this CPU: the backbones' raw inference in bfloat16 (Keras' mixed_bfloat16) against
float32, in interleaved rounds of one run (so under the same load), and what `--precision auto` chooses here.

    python bench/bench_precision.py [--rounds 3] [--seconds 10] [--backbones efficientnet-lite0,resnet50] [--sizes 224,96]

Each round times every (backbone, input size, precision) for `--seconds` on one batch of 32 real photos after a
first, untimed call (tracing); the median images/s over rounds is printed with the ratio bfloat16 / float32. The
CPU's bf16 features (AVX512_BF16, AMX) are printed too: TensorFlow's oneDNN kernels use AMX tiles for bfloat16
where the CPU has them, and only the AVX512_BF16 dot-product instructions where it does not. ResNet50 runs on
random weights (its ImageNet weights cannot be downloaded everywhere; the compute is the same).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PHOTOS = REPO.parent / "shared" / "datasets" / "cats_and_dogs_filtered" / "train"


def photos(side: int, count: int = 32) -> np.ndarray:
    from PIL import Image

    files = sorted(PHOTOS.glob("*/*.jpg"))[:count]
    if len(files) < count:
        raise SystemExit(f"fewer than {count} photos under {PHOTOS}")
    return np.stack([np.asarray(Image.open(f).convert("RGB").resize((side, side), Image.BILINEAR)) for f in files])


def backbone(name: str, precision: str, side: int):
    from auditor.backbones.registry import resolve_backbone

    model = resolve_backbone(name, "none" if name == "resnet50" else None, True, precision)
    model.input_size = side
    model.batch_shape = 32
    return model


def rate(embed, batch: np.ndarray, seconds: float) -> float:
    """Images/s of `embed` on `batch` for `seconds`, after a first, untimed call (tracing, allocation)."""
    embed(batch)
    started, done = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        embed(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)


def arguments(description: str) -> argparse.Namespace:
    """The options of the raw-inference benches (this one and bench_lite.py)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--backbones", default="efficientnet-lite0,resnet50")
    parser.add_argument("--sizes", default="224,96", help="input sides in px (ResNet50: 224 only)")
    return parser.parse_args()


def main() -> None:
    args = arguments(__doc__)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from machine import describe

    cases = [(name, side) for name in args.backbones.split(",") for side in map(int, args.sizes.split(","))
             if name != "resnet50" or side == 224]
    models = {(name, side, precision): backbone(name, precision, side)
              for name, side in cases for precision in ("bfloat16", "float32")}
    batches = {side: photos(side) for _name, side in cases}
    rates: dict[tuple, list[float]] = {key: [] for key in models}
    for round_ in range(args.rounds):
        for key, model in models.items():
            rates[key].append(rate(model.embed, batches[key[1]], args.seconds))
            print(f"round {round_ + 1}: {key[0]} {key[1]} px {key[2]}: {rates[key][-1]:.1f} images/s", flush=True)
    print(f"\n{describe()}\n")
    print("| backbone | input | bfloat16 images/s | float32 images/s | bfloat16 / float32 |\n|---|---:|---:|---:|---:|")
    for name, side in cases:
        bf16 = statistics.median(rates[(name, side, "bfloat16")])
        f32 = statistics.median(rates[(name, side, "float32")])
        print(f"| {name} | {side} px | {bf16:.1f} | {f32:.1f} | {bf16 / f32:.2f}× |")


if __name__ == "__main__":
    main()
