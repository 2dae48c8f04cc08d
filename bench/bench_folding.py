"""What folding the BatchNorms into the convolutions buys, and what it changes: each backbone folded against the
same backbone with its BatchNorm layers, in one run (so under the same load).

    python bench/bench_folding.py [--precision bfloat16|float32] [--repeats 5] [--backbones efficientnet-lite0,resnet50]

For each backbone: seconds per batch of 32 real photos (224 px, cats_and_dogs_filtered) unfolded (the reference)
and folded, the speed-up, and the cosine between the two models' outputs per photo (min, median). EfficientNet-Lite0
uses its ImageNet weights (folded from the weights file, as the audit builds it; unfolded: the reference's layers
one to one). ResNet50's ImageNet weights cannot be downloaded on every machine, so it runs on random weights with
random BatchNorm statistics (so the fold has something to fold) and is folded by `backbones.folding`. The first call
(tracing) is not timed; the median of `--repeats` calls is. In bfloat16, EfficientNet-Lite0's outputs are also
compared with a float32 run of its unfolded reference layers (the closest thing to the exact function): is the
folded model's rounding any worse than the unfolded one's?
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


def photos(count: int = 32) -> np.ndarray:
    from PIL import Image

    files = sorted(PHOTOS.glob("*/*.jpg"))[:count]
    if len(files) < count:
        raise SystemExit(f"fewer than {count} photos under {PHOTOS}")
    return np.stack([np.asarray(Image.open(f).convert("RGB").resize((224, 224), Image.BILINEAR)) for f in files]
                    ).astype("float32")


def timed(model, batch: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    output = np.asarray(model.predict_on_batch(batch), dtype=np.float32)  # traces
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict_on_batch(batch)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), output


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def efficientnet_pair():
    from auditor.backbones.efficientnet_lite0 import build_efficientnet_lite0

    return build_efficientnet_lite0(fold_batch_norm=False), build_efficientnet_lite0()


def resnet50_pair():
    import keras
    from keras import layers

    from auditor.backbones.folding import fold_batch_norms

    model = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg", input_shape=(224, 224, 3))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 2.0, variance.shape)])
    return model, fold_batch_norms(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backbones", default="efficientnet-lite0,resnet50")
    args = parser.parse_args()

    from auditor.backbones.keras_import import import_keras

    keras = import_keras()
    if args.precision == "bfloat16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    batch = photos()
    builders = {"efficientnet-lite0": efficientnet_pair, "resnet50": resnet50_pair}
    print(f"{args.precision}, 32 photos at 224 px, median of {args.repeats} calls; load average "
          f"{os.getloadavg()[0]:.1f}\n")
    notes: list[str] = []
    print("| backbone | unfolded (reference) s | folded s | speed-up | cosine folded vs unfolded: min / median |")
    print("|---|---:|---:|---:|---|")
    float32_reference = None
    if args.precision == "bfloat16" and "efficientnet-lite0" in args.backbones:
        from auditor.backbones.efficientnet_lite0 import build_efficientnet_lite0

        keras.config.set_dtype_policy("float32")
        float32_reference = np.asarray(build_efficientnet_lite0(fold_batch_norm=False).predict_on_batch(batch),
                                       dtype=np.float32)
        keras.config.set_dtype_policy("mixed_bfloat16")
    for name in args.backbones.split(","):
        unfolded, folded = builders[name]()
        reference_s, reference = timed(unfolded, batch, args.repeats)
        folded_s, output = timed(folded, batch, args.repeats)
        cosine = cosines(reference, output)
        print(f"| {name} | {reference_s:.3f} | {folded_s:.3f} | {reference_s / folded_s:.2f}× | "
              f"{cosine.min():.5f} / {np.median(cosine):.5f} |")
        if name == "efficientnet-lite0" and float32_reference is not None:
            against = {label: cosines(values, float32_reference) for label, values in
                       (("unfolded", reference), ("folded", output))}
            notes.append("efficientnet-lite0 against a float32 run of its unfolded layers, cosine min / median: "
                         + "; ".join(f"{label} {c.min():.5f} / {np.median(c):.5f}" for label, c in against.items()))
    print("\n".join(["", *notes]) if notes else "")


if __name__ == "__main__":
    main()
