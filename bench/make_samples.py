#!/usr/bin/env python3
"""Build the bundled demo dataset ``samples/`` from the shared real-photo datasets.

Usage (from the repository root)::

    python bench/make_samples.py --shared ../shared/datasets --out samples

The script deletes and rebuilds ``<out>/train`` and ``<out>/val`` and rewrites
``<out>/planted.json`` and ``<out>/README.md``.  Other files in ``<out>`` are left
alone, and nothing is written outside ``<out>``.  The output is deterministic:
same inputs, same Pillow version -> byte-identical files.

Contents: four classes (ants, bees, cats, dogs) in a train and a val split, every
photo downscaled to a longer side of at most 256 px (JPEG quality 85, no metadata),
with these planted problems (and no others):

1. leakage: 4 val images that are transformed copies of 4 distinct train images of
   the same class (JPEG q50 re-encode, resize to 60 %, 5 %-per-side crop, h-flip);
2. one exact (byte-identical) duplicate inside train/cats;
3. one label conflict: a train/bees photo copied byte-for-byte into train/ants;
4. one broken file: a truncated JPEG (first 40 % of the bytes) in train/bees;
5. one under-represented class: dogs (4 train, 2 val).

Candidate photos are taken in (natural) sorted file-name order; a candidate is
skipped when it is not a plain RGB JPEG of normal size/aspect/contrast or when it
is too similar to any photo already chosen (8x8 average-hash, 8x8 difference-hash
and 8x8 DCT-hash Hamming distance < 12, also against the mirrored image).
"""
from __future__ import annotations

import argparse
import io
import json
import random
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

SEED = 20240601
MAX_SIDE = 256
QUALITY = 85
MIN_HASH_DIST = 12          # required Hamming distance between any two chosen photos
TRUNCATE_FRACTION = 0.40

# (class, source dataset dir, {our split: source split dir}, {split: count})
N_MAIN_TRAIN = 30
N_MAIN_VAL = 12             # files in val per main class, leaked copies included
CLASSES = {
    "ants": ("hymenoptera_data", {"train": "train", "val": "val"}, "ants"),
    "bees": ("hymenoptera_data", {"train": "train", "val": "val"}, "bees"),
    "cats": ("cats_and_dogs_filtered", {"train": "train", "val": "validation"}, "cats"),
    "dogs": ("cats_and_dogs_filtered", {"train": "train", "val": "validation"}, "dogs"),
}
UNDER_REPRESENTED = "dogs"
COUNTS = {"dogs": {"train": 4, "val": 2}}

# leakage plan: (class, transform); sources are distinct train images of that class
LEAKS = [
    ("ants", "jpeg_q50"),
    ("bees", "resize_60"),
    ("cats", "crop_5pct_each_side"),
    ("bees", "hflip"),
]
EXACT_DUP_CLASS = "cats"
CONFLICT = ("bees", "ants")   # (source class, class it is wrongly copied into)
BROKEN_CLASS = "bees"

# Photos skipped by hand: not hash-near-duplicates, but shot in the same session as an
# earlier chosen photo (consecutive Flickr ids, same subject), so a semantic/embedding
# similarity check could rightly call them near-duplicates.
SAME_SCENE = {
    "hymenoptera_data/train/ants/150801171_cd86f17ed8.jpg": "150801003_3390b73135.jpg",
    "hymenoptera_data/train/bees/452462695_40a4e5b559.jpg": "452462677_7be43af8ff.jpg",
}

# Photos skipped by hand because the insect is a speck in a large scene: correctly labelled, but a
# linear probe on 30 images per class reads the background and the label-issue check rightly calls
# them doubtful. The demo should show the planted problems, not argue about these.
AMBIGUOUS = {
    "hymenoptera_data/val/ants/119785936_dd428e40c3.jpg": "a tiny ant on a large blossom",
    "hymenoptera_data/val/bees/59798110_2b6a3c8031.jpg": "a small bee on a dead leaf, mostly background",
}

TRANSFORM_TEXT = {
    "jpeg_q50": "re-encoded as JPEG quality 50 (same size)",
    "resize_60": "resized to 60 % of width and height (Lanczos), JPEG q85",
    "crop_5pct_each_side": "cropped 5 % off each side (~10 % per axis), JPEG q85, not resized",
    "hflip": "mirrored left-right, JPEG q85",
}


# ----------------------------------------------------------------------------- hashing
def _gray(im: Image.Image, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(im.convert("L").resize(size, Image.Resampling.LANCZOS), dtype=np.float64)


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_D32 = _dct_matrix(32)


def hashes(im: Image.Image) -> np.ndarray:
    """Concatenated boolean (ahash64, dhash64, phash64)."""
    a = _gray(im, (8, 8))
    ah = (a > a.mean()).ravel()
    d = _gray(im, (9, 8))
    dh = (d[:, 1:] > d[:, :-1]).ravel()
    p = _gray(im, (32, 32))
    c = (_D32 @ p @ _D32.T)[:8, :8].ravel()
    ph = c > np.median(c[1:])
    return np.stack([ah, dh, ph])


def min_dist(h1: np.ndarray, h2: np.ndarray) -> int:
    return int((h1 != h2).sum(axis=1).min())


# ----------------------------------------------------------------------------- images
def natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def clean_copy(im: Image.Image) -> Image.Image:
    """Pixel-only RGB copy: no EXIF/ICC/other info carried over."""
    im = im.convert("RGB")
    out = Image.new("RGB", im.size)
    out.paste(im)
    return out


def encode(im: Image.Image, quality: int = QUALITY) -> bytes:
    buf = io.BytesIO()
    clean_copy(im).save(buf, "JPEG", quality=quality, optimize=False, progressive=False)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im.convert("RGB")


def downscale(path: Path) -> Image.Image | str:
    """Load a source photo, apply EXIF orientation, downscale; a reason string if unsuitable."""
    try:
        with Image.open(path) as src:
            if src.format != "JPEG" or src.mode != "RGB":
                return f"not an RGB JPEG ({src.format} {src.mode})"
            im = ImageOps.exif_transpose(src)
            im.load()
    except Exception as e:  # pragma: no cover - the sources all decode
        return f"unreadable ({e})"
    w, h = im.size
    if max(w, h) < MAX_SIDE:
        return f"too small ({w}x{h})"
    if max(w, h) / min(w, h) > 1.8:
        return f"aspect ratio {max(w, h) / min(w, h):.2f} > 1.8 ({w}x{h})"
    s = MAX_SIDE / max(w, h)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    im = clean_copy(im).resize(size, Image.Resampling.LANCZOS)
    a = np.asarray(im, dtype=np.float64)
    gray = a.mean(axis=2)
    colourfulness = (np.abs(a[..., 0] - a[..., 1]) + np.abs(a[..., 1] - a[..., 2])).mean()
    if colourfulness < 8:
        return f"near-grayscale (colourfulness {colourfulness:.1f} < 8)"
    if not 40 <= gray.mean() <= 215:
        return f"too dark/bright (mean {gray.mean():.0f})"
    if gray.std() < 35:
        return f"low contrast (std {gray.std():.1f} < 35)"
    return im


@dataclass
class Chosen:
    rel: str                 # path relative to out dir, posix
    source: str              # path relative to shared dir
    data: bytes
    hash: np.ndarray = field(repr=False)


class Picker:
    def __init__(self, shared: Path):
        self.shared = shared
        self.hashes: list[tuple[str, np.ndarray]] = []
        self.skipped: list[tuple[str, str]] = []

    def accept_hash(self, rel: str, im: Image.Image) -> np.ndarray | str:
        h = hashes(im)
        hf = hashes(ImageOps.mirror(im))
        for other_rel, oh in self.hashes:
            d = min(min_dist(h, oh), min_dist(hf, oh))
            if d < MIN_HASH_DIST:
                return f"too similar to chosen `{other_rel}` (hash distance {d} < {MIN_HASH_DIST})"
        self.hashes.append((rel, h))
        return h

    def skip(self, src_rel: str, why: str) -> None:
        if src_rel not in {s for s, _ in self.skipped}:
            self.skipped.append((src_rel, why))

    def pick(self, src_dir: Path, n: int, split: str, cls: str, exclude: set[str]) -> list[Chosen]:
        out: list[Chosen] = []
        for p in sorted(src_dir.iterdir(), key=lambda q: natural_key(q.name)):
            if len(out) == n:
                break
            if p.name in exclude or not p.is_file():
                continue
            src_rel = p.relative_to(self.shared).as_posix()
            if src_rel in AMBIGUOUS:
                self.skip(src_rel, f"subject hard to see: {AMBIGUOUS[src_rel]} (skipped by hand)")
                continue
            if src_rel in SAME_SCENE:
                self.skip(src_rel, f"same scene/session as chosen `{SAME_SCENE[src_rel]}` (skipped by hand)")
                continue
            im = downscale(p)
            if isinstance(im, str):
                self.skip(src_rel, im)
                continue
            name = p.stem + ".jpg"
            rel = f"{split}/{cls}/{name}"
            data = encode(im)
            h = self.accept_hash(rel, decode(data))
            if isinstance(h, str):
                self.skip(src_rel, h)
                continue
            out.append(Chosen(rel, src_rel, data, h))
        if len(out) < n:
            sys.exit(f"not enough usable photos in {src_dir}")
        return out


def fake_flickr_name(rng: random.Random, taken: set[str]) -> str:
    while True:
        name = f"{rng.randrange(10**9, 4 * 10**9)}_{rng.getrandbits(40):010x}.jpg"
        if name not in taken:
            return name


def fake_number_name(rng: random.Random, prefix: str, lo: int, hi: int, taken: set[str]) -> str:
    while True:
        name = f"{prefix}.{rng.randrange(lo, hi)}.jpg"
        if name not in taken:
            return name


# ----------------------------------------------------------------------------- main
def build(shared: Path, out: Path) -> dict:
    rng = random.Random(SEED)
    picker = Picker(shared)
    files: dict[str, bytes] = {}          # rel -> bytes (final content)
    sources: dict[str, str] = {}          # rel -> description of origin
    chosen: dict[tuple[str, str], list[Chosen]] = {}

    n_leaks = {c: sum(1 for lc, _ in LEAKS if lc == c) for c in CLASSES}
    for split in ("train", "val"):
        for cls, (ds, split_map, src_cls) in CLASSES.items():
            if cls in COUNTS:
                n = COUNTS[cls][split]
            else:
                n = N_MAIN_TRAIN if split == "train" else N_MAIN_VAL - n_leaks[cls]
            src_dir = shared / ds / split_map[split] / src_cls
            exclude = {"imageNotFound.gif"}
            chosen[(split, cls)] = picker.pick(src_dir, n, split, cls, exclude)
            for c in chosen[(split, cls)]:
                files[c.rel] = c.data
                sources[c.rel] = c.source

    # distinct train sources for every planted problem
    used: set[str] = set()

    def take(cls: str) -> Chosen:
        pool = [c for c in chosen[("train", cls)] if c.rel not in used]
        c = rng.choice(pool)
        used.add(c.rel)
        return c

    def names_in(split: str, cls: str) -> set[str]:
        return {Path(r).name for r in files if r.startswith(f"{split}/{cls}/")}

    planted: dict = {"leakage": [], "exact_duplicates": [], "label_conflicts": [],
                     "broken": [], "under_represented": UNDER_REPRESENTED}

    # 1. leakage
    for cls, transform in LEAKS:
        src = take(cls)
        im = decode(src.data)
        w, h = im.size
        if transform == "jpeg_q50":
            data = encode(im, quality=50)
        elif transform == "resize_60":
            data = encode(im.resize((round(w * 0.6), round(h * 0.6)), Image.Resampling.LANCZOS))
        elif transform == "crop_5pct_each_side":
            dx, dy = round(w * 0.05), round(h * 0.05)
            data = encode(im.crop((dx, dy, w - dx, h - dy)))
        elif transform == "hflip":
            data = encode(ImageOps.mirror(im))
        else:
            raise ValueError(transform)
        taken = names_in("val", cls) | names_in("train", cls)
        if cls in ("cats", "dogs"):
            name = fake_number_name(rng, cls[:-1], 2000, 2500, taken)
        else:
            name = fake_flickr_name(rng, taken)
        rel = f"val/{cls}/{name}"
        files[rel] = data
        sources[rel] = f"planted: {transform} of {src.rel}"
        planted["leakage"].append({"held_out": rel, "train": src.rel, "transform": transform})

    # 2. exact duplicate
    src = take(EXACT_DUP_CLASS)
    name = fake_number_name(rng, EXACT_DUP_CLASS[:-1], 0, 1000, names_in("train", EXACT_DUP_CLASS))
    rel = f"train/{EXACT_DUP_CLASS}/{name}"
    files[rel] = src.data
    sources[rel] = f"planted: byte-identical copy of {src.rel}"
    planted["exact_duplicates"].append([src.rel, rel])

    # 3. label conflict
    src_cls, dst_cls = CONFLICT
    src = take(src_cls)
    name = fake_flickr_name(rng, names_in("train", dst_cls) | names_in("train", src_cls))
    rel = f"train/{dst_cls}/{name}"
    files[rel] = src.data
    sources[rel] = f"planted: byte-identical copy of {src.rel} (wrong class)"
    planted["label_conflicts"].append([src.rel, rel])

    # 4. broken file: a further (unused, distinct) photo of the class, truncated
    ds, split_map, src_cls = CLASSES[BROKEN_CLASS]
    exclude = {Path(c.source).name for c in chosen[("train", BROKEN_CLASS)]} | {"imageNotFound.gif"}
    extra = picker.pick(shared / ds / split_map["train"] / src_cls, 1, "train", BROKEN_CLASS, exclude)[0]
    cut = int(len(extra.data) * TRUNCATE_FRACTION)
    files[extra.rel] = extra.data[:cut]
    sources[extra.rel] = f"planted: first {cut} of {len(extra.data)} bytes of a downscaled {extra.source}"
    planted["broken"].append(extra.rel)

    # ---- write
    for split in ("train", "val"):
        d = out / split
        if d.exists():
            shutil.rmtree(d)
    for rel in sorted(files):
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(files[rel])
    (out / "planted.json").write_text(json.dumps(planted, indent=2) + "\n")

    # ---- self-check of the planted leaks (hash distance to their train source)
    leak_dist = {}
    for e in planted["leakage"]:
        a = hashes(decode(files[e["held_out"]]))
        b = decode(files[e["train"]])
        hb = hashes(ImageOps.mirror(b)) if e["transform"] == "hflip" else hashes(b)
        leak_dist[e["held_out"]] = [int(x) for x in (a != hb).sum(axis=1)]
    closest = verify(files, planted)
    write_readme(out, files, sources, planted, leak_dist, closest, picker.skipped)
    return planted


def verify(files: dict[str, bytes], planted: dict) -> tuple[int, str, str]:
    """Check that the only similar pairs are the planted ones; return the closest other pair."""
    decoded = {}
    for rel, data in files.items():
        try:
            decoded[rel] = decode(data)
        except OSError:
            if rel not in planted["broken"]:
                raise
    assert sorted(set(files) - set(decoded)) == sorted(planted["broken"])
    h = {r: hashes(im) for r, im in decoded.items()}
    hf = {r: hashes(ImageOps.mirror(im)) for r, im in decoded.items()}
    expected = {frozenset((e["held_out"], e["train"])) for e in planted["leakage"]}
    expected |= {frozenset(p) for p in planted["exact_duplicates"] + planted["label_conflicts"]}
    rels = sorted(h)
    found, closest = set(), (10**9, "", "")
    for i, a in enumerate(rels):
        for b in rels[i + 1:]:
            d = min(min_dist(h[a], h[b]), min_dist(hf[a], h[b]))
            if d < MIN_HASH_DIST:
                found.add(frozenset((a, b)))
            elif frozenset((a, b)) not in expected:
                closest = min(closest, (d, a, b))
    if found != expected:
        sys.exit(f"similar pairs differ from the planted ones: extra {found - expected}, missing {expected - found}")
    return closest


def write_readme(out: Path, files, sources, planted, leak_dist, closest, skipped) -> None:
    counts = {}
    for rel in files:
        split, cls, _ = rel.split("/")
        counts[(split, cls)] = counts.get((split, cls), 0) + 1
    total_bytes = sum(len(b) for b in files.values())
    sizes = {}
    for rel, b in files.items():
        if rel in planted["broken"]:
            continue
        sizes[rel] = Image.open(io.BytesIO(b)).size
    L = []
    L.append("# samples/ — bundled demo dataset with planted problems\n")
    L.append("Generated by `python bench/make_samples.py --shared ../shared/datasets --out samples`"
             f" (seed {SEED}; deterministic, byte-identical on re-run with the same Pillow).")
    L.append("Do not edit the image folders by hand; change the script and re-run it.\n")
    L.append("Layout: `<split>/<class>/<file>`, splits `train` and `val`, classes "
             "`ants`, `bees`, `cats`, `dogs`. The machine-readable list of planted problems is "
             "`planted.json`; an audit of this folder should find exactly those problems and no others.\n")
    L.append("## Where the photos come from\n")
    L.append("| classes | source folder | GitHub copy (repo @ commit) | upstream origin |")
    L.append("|---|---|---|---|")
    L.append("| ants, bees | `hymenoptera_data/{train,val}/{ants,bees}` | `zhangtao7750/syn` @ "
             "`f0503091488f67b6809a6da2eaa43c25f2f277fc` | PyTorch transfer-learning tutorial "
             "(`download.pytorch.org/tutorial/hymenoptera_data.zip`), a small ImageNet subset; "
             "mostly Flickr photos |")
    L.append("| cats, dogs | `cats_and_dogs_filtered/{train,validation}/{cats,dogs}` | "
             "`7201krap/COURSERA_Introduction-to-CNN-with-Tensorflow` @ "
             "`287dfd672cf509e3bf59ae9510977291d8727e09` | Google `cats_and_dogs_filtered.zip`, "
             "subset of Kaggle \"Dogs vs. Cats\" (Microsoft Research Asirra; photos from Petfinder.com) |")
    L.append("")
    L.append("**Terms.** Neither dataset ships a licence. The photos belong to their owners "
             "(Flickr users, Petfinder/shelter users); the upstream terms (ImageNet, Kaggle "
             "competition rules) allow non-commercial research and education only. Use these "
             "files only as internal test/demo data; do not ship or redistribute them as part of "
             "a product.\n")
    L.append("## Processing\n")
    L.append("- Candidates are taken per source folder in natural sorted file-name order "
             "(`imageNotFound.gif` is never used).")
    L.append("- A candidate is skipped if it is not an RGB JPEG, its longer side is < 256 px, its "
             "aspect ratio exceeds 1.8, it is near-grayscale, very dark/bright or low-contrast, or "
             f"if any of its 8x8 average/difference/DCT hashes (also of its mirror image) is within "
             f"Hamming distance < {MIN_HASH_DIST} of a photo already chosen (any class or split). "
             "Two photos were also skipped by hand because they show the same scene as a chosen "
             "photo (same Flickr session), see the list below.")
    L.append("- EXIF orientation is applied, then every photo is downscaled (Lanczos) so that its "
             "longer side is 256 px, and re-encoded as baseline JPEG quality 85 with no EXIF, ICC "
             "or other metadata. Original file names are kept (`.jpg`).")
    c = closest
    L.append(f"- Check after writing: over all decodable files, the only pairs with a hash distance "
             f"< {MIN_HASH_DIST} (min over the three hashes, mirror included) are the planted ones below. "
             f"Closest other pair: distance {c[0]} (`{c[1]}` vs `{c[2]}`).")
    if skipped:
        L.append(f"- {len(skipped)} candidates were skipped (sizes/hashes are of the source or of its "
                 "downscaled version):")
        for s, why in skipped:
            L.append(f"  - `{s}`: {why}")
    L.append("")
    L.append("## Counts (files on disk, planted files included)\n")
    L.append("| class | train | val | total |")
    L.append("|---|---:|---:|---:|")
    for cls in CLASSES:
        t, v = counts.get(("train", cls), 0), counts.get(("val", cls), 0)
        L.append(f"| {cls} | {t} | {v} | {t + v} |")
    nt = sum(v for (s, _), v in counts.items() if s == "train")
    nv = sum(v for (s, _), v in counts.items() if s == "val")
    L.append(f"| **all** | **{nt}** | **{nv}** | **{nt + nv}** |")
    L.append("")
    L.append(f"Total image bytes: {total_bytes:,}. Image sizes range from "
             f"{min(sizes.values(), key=lambda s: s[0]*s[1])[0]}x{min(sizes.values(), key=lambda s: s[0]*s[1])[1]}"
             f" to {max(sizes.values(), key=lambda s: s[0]*s[1])[0]}x{max(sizes.values(), key=lambda s: s[0]*s[1])[1]} px.\n")
    L.append("## Planted problems (exact and complete list)\n")
    L.append("| # | kind | path(s) | details |")
    L.append("|---|---|---|---|")
    i = 0
    for e in planted["leakage"]:
        i += 1
        d = leak_dist[e["held_out"]]
        L.append(f"| {i} | leakage (train/val near-duplicate) | `{e['held_out']}` ← `{e['train']}` | "
                 f"`{e['transform']}`: {TRANSFORM_TEXT[e['transform']]}; a/d/DCT-hash distance to source"
                 f"{' (mirrored)' if e['transform'] == 'hflip' else ''} = {d[0]}/{d[1]}/{d[2]} |")
    for a, b in planted["exact_duplicates"]:
        i += 1
        L.append(f"| {i} | exact duplicate (same class, same split) | `{a}` = `{b}` | byte-identical copy |")
    for a, b in planted["label_conflicts"]:
        i += 1
        L.append(f"| {i} | label conflict | `{a}` = `{b}` | byte-identical copy of a "
                 f"{a.split('/')[1][:-1]} photo filed under `{b.split('/')[1]}` |")
    for b in planted["broken"]:
        i += 1
        L.append(f"| {i} | broken file | `{b}` | {sources[b].removeprefix('planted: ')}; "
                 "header opens, decoding fails (truncated) |")
    i += 1
    t = {cls: counts.get(("train", cls), 0) for cls in CLASSES}
    a = {cls: counts.get(("train", cls), 0) + counts.get(("val", cls), 0) for cls in CLASSES}
    big = max(t, key=t.get)
    L.append(f"| {i} | under-represented class | `train/{UNDER_REPRESENTED}/`, `val/{UNDER_REPRESENTED}/` | "
             f"{t[UNDER_REPRESENTED]} train / {counts.get(('val', UNDER_REPRESENTED), 0)} val files; "
             f"train imbalance {t[big]}/{t[UNDER_REPRESENTED]} = {t[big] / t[UNDER_REPRESENTED]:.1f}x, "
             f"all splits {max(a.values())}/{a[UNDER_REPRESENTED]} = {max(a.values()) / a[UNDER_REPRESENTED]:.1f}x |")
    L.append("")
    L.append("Notes")
    L.append("- The leaked val files, the extra duplicate and the label-conflict copy have ordinary "
             "made-up names (Flickr-style `<id>_<secret>.jpg` or `cat.<n>.jpg`) that do not reveal the "
             "planting and do not match the source file they were derived from.")
    L.append("- The label-conflict pair is byte-identical, so a naive byte-hash check also sees it as an "
             "exact duplicate; it is listed only under label conflicts because the two copies are in "
             "different classes. `exact_duplicates` lists only the same-class pair.")
    L.append("- The truncated file was made from a photo that is used nowhere else in `samples/`, so it "
             "cannot be a (partial) near-duplicate of another file.")
    L.append("- Every planted pair uses a different train photo; no photo takes part in two problems.")
    L.append("")
    L.append("## All files and their origin\n")
    L.append("| file | origin |")
    L.append("|---|---|")
    for rel in sorted(files, key=lambda r: (r.split("/")[0] != "train", r.split("/")[1], natural_key(r))):
        L.append(f"| `{rel}` | {sources[rel] if sources[rel].startswith('planted') else '`' + sources[rel] + '`'} |")
    (out / "README.md").write_text("\n".join(L) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, required=True, help="folder holding hymenoptera_data/ and cats_and_dogs_filtered/")
    ap.add_argument("--out", type=Path, required=True, help="output folder, e.g. samples")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    planted = build(args.shared.resolve(), args.out)
    print(json.dumps(planted, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
