"""The LiteRT copy of a backbone against its Keras model, float32, on this CPU: raw inference in interleaved rounds of
one run (so under the same load), the conversion's time, the start-up a small job pays, and how far apart their
embeddings are.

    python bench/bench_lite.py [--rounds 3] [--seconds 10] [--backbones efficientnet-lite0,resnet50] [--sizes 224,96]

Each round times every (backbone, input size, runtime) for `--seconds` on one batch of 32 real photos after a first,
untimed call; the median images/s over rounds is printed with the ratio LiteRT / Keras. Both use every core
(LiteRT's interpreter with as many threads as the machine has). ResNet50 runs on random weights (its ImageNet
weights cannot be downloaded everywhere; the compute is the same), EfficientNet-Lite0 on its packaged ImageNet
weights. The start-up is measured in a fresh process for each: importing TensorFlow, building the Keras model and
calling it once, against importing LiteRT, loading the copy and calling it once.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The same photos, backbones, options and timing as the precision bench.
from bench_precision import arguments, backbone, photos, rate  # noqa: E402


STARTUP = {
    "keras": ("import time, numpy as np; t = time.perf_counter()\n"
              "from auditor.backbones.registry import resolve_backbone\n"
              "b = resolve_backbone({name!r}, {weights!r}, True, 'float32'); b.input_size = {side}\n"
              "b.embed(np.zeros((2, {side}, {side}, 3), np.uint8)); print(time.perf_counter() - t)"),
    "litert": ("import time, numpy as np; t = time.perf_counter()\n"
               "from auditor.backbones.lite import LiteModel\n"
               "LiteModel({path!r}).embed(np.zeros((2, {side}, {side}, 3), np.uint8)); print(time.perf_counter() - t)"),
}


def startup_seconds(runtime: str, **fields) -> float:
    code = STARTUP[runtime].format(**fields)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"})
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    args = arguments(__doc__)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from machine import describe

    from auditor.backbones.lite import LiteModel, write_copy

    work = Path(tempfile.mkdtemp(prefix="auditor-bench-lite-"))
    cases = [(name, side) for name in args.backbones.split(",") for side in map(int, args.sizes.split(","))
             if name != "resnet50" or side == 224]
    keras_side, lite_side, converted, paths = {}, {}, {}, {}
    for name, side in cases:
        model = backbone(name, "float32", side)
        model.model  # noqa: B018  (built before the conversion is timed)
        paths[(name, side)] = work / f"{name}-{side}.tflite"
        started = time.perf_counter()
        why_not = write_copy(model.model, paths[(name, side)])
        if why_not:
            raise SystemExit(f"{name} at {side} px: {why_not}")
        converted[(name, side)] = time.perf_counter() - started
        keras_side[(name, side)] = model.embed
        lite_side[(name, side)] = LiteModel(paths[(name, side)]).embed
    batches = {side: photos(side) for _name, side in cases}
    agreement = {}
    for key in cases:
        a, b = keras_side[key](batches[key[1]]), lite_side[key](batches[key[1]])
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        agreement[key] = (float(cosine.min()), float(np.abs(a - b).max()), float(np.abs(a).max()))
    rates: dict[tuple, list[float]] = {(*key, runtime): [] for key in cases for runtime in ("keras", "litert")}
    for round_ in range(args.rounds):
        for key in cases:
            for runtime, embed in (("keras", keras_side[key]), ("litert", lite_side[key])):
                rates[(*key, runtime)].append(rate(embed, batches[key[1]], args.seconds))
                print(f"round {round_ + 1}: {key[0]} {key[1]} px {runtime}: {rates[(*key, runtime)][-1]:.1f} images/s",
                      flush=True)
    startup = {}
    for name, side in cases:
        weights = "none" if name == "resnet50" else None
        startup[(name, side)] = (startup_seconds("keras", name=name, weights=weights, side=side),
                                 startup_seconds("litert", path=str(paths[(name, side)]), side=side))
    print(f"\n{describe()}\n")
    print("| backbone | input | Keras images/s | LiteRT images/s | LiteRT / Keras | conversion s | start-up to a first "
          "embedding, Keras / LiteRT s | cosine min; largest difference (of values up to) |\n"
          "|---|---:|---:|---:|---:|---:|---:|---|")
    for name, side in cases:
        keras_rate = statistics.median(rates[(name, side, "keras")])
        lite_rate = statistics.median(rates[(name, side, "litert")])
        cosine, difference, largest = agreement[(name, side)]
        print(f"| {name} | {side} px | {keras_rate:.1f} | {lite_rate:.1f} | {lite_rate / keras_rate:.2f}× | "
              f"{converted[(name, side)]:.1f} | {startup[(name, side)][0]:.1f} / {startup[(name, side)][1]:.2f} | "
              f"{cosine:.7f}; {difference:.1e} ({largest:.1f}) |")


if __name__ == "__main__":
    main()
