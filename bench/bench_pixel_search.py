"""The duplicate decision's pixel candidate search at scale: N grey 32 px thumbnails, searched as the decision
searches small images (similarity/evidence.py): the crop index as is and mirrored (3 candidates each), the
whole-frame index under the six rotations (1 each), and both indexes' recall against exact search.

    python bench/bench_pixel_search.py [--n 1000000] [--work DIR]

The thumbnails: the 50 399 disjoint 32 px tiles of the shared photos (bench/truth_data.py `tiles_pool`, made under
WORK once), then mirrored, 1–3 px shifted, gain/offset-changed copies of them up to N, so every tile has look-alikes
as a copy-heavy dataset does. No hashes, no correlations: the search alone. Reference, measured in the same run:
the exact search (crops, as is) of the first 20 000 thumbnails, the largest the decision searches exactly; the
search is printed as a ratio to it per query. The machine is shared: quote CPU seconds with the walls.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def tile_thumbnails(work: Path) -> np.ndarray:
    """The tiles' grey thumbnails as the scan makes them, cached under WORK."""
    cached = work / "tile_thumbnails.npy"
    if cached.exists():
        return np.load(cached)
    import truth_data as td

    from auditor.encoding.imaging import ScanLimits, scan_bytes
    from auditor.similarity.pixels import decode_grey32

    pool = work / "pool" / "tiles_32"
    rows = td.tiles_pool(REPO.parent.parent / "shared" / "datasets" if not (REPO.parent / "shared").exists()
                         else REPO.parent / "shared" / "datasets", pool)
    thumbs = np.stack([decode_grey32(scan_bytes((pool / rel).read_bytes(), ScanLimits(min_side=8))[0].grey32)
                       for rel, _split, _label, _source in rows])
    work.mkdir(parents=True, exist_ok=True)
    np.save(cached, thumbs)
    return thumbs


def variants_up_to(base: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """`base` then changed copies of random base thumbnails, n in all (filled in place: one n × 32 × 32 array)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, *base.shape[1:]), dtype=np.uint8)
    made = min(n, len(base))
    out[:made] = base[:made]
    while made < n:
        take = min(len(base), n - made)
        pick = base[rng.integers(0, len(base), take)]
        pick = pick[:, :, ::-1] if rng.random() < 0.5 else pick
        dy, dx = rng.integers(-3, 4, 2)
        pick = np.roll(pick, (int(dy), int(dx)), axis=(1, 2)).astype(np.float32)
        out[made:made + take] = np.clip(pick * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20), 0, 255)
        made += take
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/auditor_pixel_search"))
    args = parser.parse_args()
    from machine import describe

    from auditor.similarity import evidence as ev
    from auditor.similarity import pixels as px

    print(describe(), flush=True)
    thumbs = variants_up_to(tile_thumbnails(args.work), args.n)
    n = len(thumbs)
    clock = lambda: (time.perf_counter(), time.process_time())
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6

    def dataset(images: np.ndarray) -> ev.Dataset:
        # Not ev.make_dataset: it also hashes every thumbnail (minutes at 10⁶), which the pixel search never reads.
        count = len(images)
        descriptors = (ev._chunked(px.crop_descriptors, images, 64 * px.DESCRIPTORS_PER_IMAGE, np.float32)
                       if count <= ev.EXACT_PIXEL_SEARCH else None)
        return ev.Dataset(unit=None, thumbs=images, phash=np.zeros((count, 8), np.uint8),
                          dhash=np.zeros((count, 8), np.uint8), background=np.zeros(count, np.float32),
                          descriptors=descriptors, pixel_candidates=True)

    reference = thumbs[:min(n, ev.EXACT_PIXEL_SEARCH)]
    (w0, c0) = clock()
    ev.pixel_neighbours(dataset(reference), ev._chunked(px.block_descriptors, reference, 64, np.float32),
                        ev.PIXEL_CANDIDATES + 1)
    (w1, c1) = clock()
    reference_rate = len(reference) / (w1 - w0)
    print(f"reference: exact search (crops, as is) of {len(reference)} thumbnails: {w1 - w0:.1f} s / {c1 - c0:.1f} "
          f"CPU-s, {reference_rate:.0f} queries/s", flush=True)
    data = dataset(thumbs)
    total_wall = total_cpu = 0.0
    print("| variant | index | wall s | CPU s | recall [95 %] (measured in s) | peak RSS GB |")
    print("|---|---|---|---|---|---|")
    for variant in range(8):
        crops = variant in (0, 4)
        wanted = ev.PIXEL_CANDIDATES if crops else ev.ROTATED_CANDIDATES
        built = (data.pixel_index if crops else data.plain_pixel_index) is not None
        (w0, c0) = clock()
        turned = ev._chunked(px.block_descriptors, px.dihedral(thumbs, variant), 64, np.float32)
        _sims, labels = ev.pixel_neighbours(data, turned, wanted + 1, crops=crops)
        (w1, c1) = clock()
        recall = "–"
        if variant in (0, 1) and n > ev.EXACT_PIXEL_SEARCH:
            quality = ev.pixel_search_quality(data, turned, labels, np.arange(n), crops=crops)
            (w2, c2) = clock()
            low, high = quality.recall_interval
            recall = f"{quality.recall:.3f} [{low:.3f}, {high:.3f}] ({w2 - w1:.1f})"
            w1, c1 = w2, c2
        total_wall, total_cpu = total_wall + w1 - w0, total_cpu + c1 - c0
        index = ("crops" if crops else "whole frames") + ("" if built else ", built")
        print(f"| {variant} | {index} | {w1 - w0:.1f} | {c1 - c0:.1f} | {recall} | {peak():.2f} |", flush=True)
    rate = n / total_wall
    print(f"all 8 variants: {total_wall:.1f} s / {total_cpu:.1f} CPU-s for {n} thumbnails, {rate:.0f} images/s = "
          f"{rate / reference_rate:.2f}× the exact search's queries/s at {len(reference)} (per variant: "
          f"{8 * rate / reference_rate:.2f}×)")


if __name__ == "__main__":
    main()
