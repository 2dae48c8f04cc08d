"""The duplicate decision's hash search on real codes: each image's 8 dihedral pHash codes as probes, each probe's
32 nearest codes within 6 bits (`neighbours.hamming_nearest` with `evidence.HASH_SEARCHED`, as the decision searches),
timed per search method.

    python bench/bench_hamming.py [--images 60000] [--sizes 3000,20000,60000] [--work DIR]

The codes: crops of the shared photos at 32 px (`scale_data.generate_images(..., side=32)`, made under WORK once),
their 32 × 32 grey thumbnails as the scan makes them, hashed under the 8 rotations and mirrorings (cached under WORK).
For each size (the first N images): the flat search (FAISS IndexBinaryFlat, the reference of the row, measured in
the same run), multi-index hashing with FAISS's IndexBinaryMultiHash and with the direct tables
(`similarity/multi_index.py`), the same plan; from 200 000 codes the complete search on the direct tables (the
reference there) and the approximate search the decision runs there (the tables planned for one bit less, where its
sample says they find enough), with the share of the complete search's rows it finds. Every complete method must
return the same rows (checked). The machine is shared: ratios to the reference of the same row, and CPU seconds
beside the walls.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

SHARED = REPO.parent / "shared" / "datasets"


def _grey(path: str):
    from auditor.encoding.imaging import ScanLimits, scan_bytes
    from auditor.similarity.pixels import decode_grey32

    scan, _ = scan_bytes(Path(path).read_bytes(), ScanLimits())
    return decode_grey32(scan.grey32)


def dihedral_phash(work: Path, images: int) -> np.ndarray:
    """(8, n, 8) uint8: the pHash codes of `images` 32 px crops under each dihedral variant, cached under WORK."""
    cached = work / f"dihedral_phash_{images}.npy"
    if cached.exists():
        return np.load(cached)
    from scale_data import generate_images

    from auditor.similarity.evidence import dihedral_codes

    folder = work / f"crops{images}-32px"
    generate_images(SHARED, folder, images, seed=0, workers=2, side=32)
    files = sorted(str(p) for p in folder.rglob("*.jpg"))[:images]
    with ProcessPoolExecutor(2) as pool:
        thumbs = np.stack([g for g in pool.map(_grey, files, chunksize=512) if g is not None])
    phash, _dhash = dihedral_codes(thumbs)
    np.save(cached, phash)
    return phash


def timed(search):
    cpu, wall = time.process_time(), time.perf_counter()
    rows = search()
    return rows, time.perf_counter() - wall, time.process_time() - cpu


def run_size(phash: np.ndarray, n: int) -> None:
    from auditor.similarity import multi_index, neighbours

    codes = np.ascontiguousarray(phash[0, :n])
    probes = np.ascontiguousarray(phash[:, :n].reshape(-1, 8))
    saved = (neighbours.HAMMING_EXACT_LIMIT, neighbours.HAMMING_APPROXIMATE_FROM, multi_index.MAX_TABLE_BITS)
    # (flat search up to, approximate from, direct tables' largest table) for each method, the first the reference
    if n < saved[1]:
        methods = {"flat (reference)": (10**12, 10**12, saved[2]), "FAISS multi-index": (0, 10**12, 0),
                   "direct multi-index": (0, 10**12, saved[2])}
    else:  # flat search would be 10¹¹ comparisons and more, FAISS's multi-index ≈ 150 µs a probe
        methods = {"direct multi-index, complete (reference)": (0, 10**12, saved[2]),
                   "approximate (the decision's from 200 000)": (0, 0, saved[2])}
    from auditor.similarity.evidence import HASH_SEARCHED

    results, reference, quality = {}, None, []
    try:
        for name, (exact_limit, approximate_from, table_bits) in methods.items():
            neighbours.HAMMING_EXACT_LIMIT, neighbours.HAMMING_APPROXIMATE_FROM = exact_limit, approximate_from
            multi_index.MAX_TABLE_BITS = table_bits
            rows, wall, cpu = timed(lambda: neighbours.hamming_nearest(codes, probes, 6, HASH_SEARCHED, quality=quality))
            reference = reference or wall
            results[name] = rows
            print(f"| {n} | {name} | {wall:.2f} | {cpu:.2f} | {wall / reference:.2f} | {len(rows)} |", flush=True)
    finally:
        neighbours.HAMMING_EXACT_LIMIT, neighbours.HAMMING_APPROXIMATE_FROM, multi_index.MAX_TABLE_BITS = saved
    complete = [rows for name, rows in results.items() if "approximate" not in name]
    if any(not np.array_equal(complete[0], rows) for rows in complete[1:]):
        raise SystemExit(f"{n} codes: the complete searches returned different rows")
    for name, rows in results.items():
        if "approximate" in name:
            found = neighbours._found_rows(complete[0], rows).mean()
            print(f"|  | … its share of the complete search's rows | {found:.3f} | | | |")
            print(f"|  | … {quality[-1].method}; its sample: {quality[-1].parameters} | | | | |", flush=True)


def main() -> None:
    from machine import describe

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--sizes", default=None, help="comma list of sizes (default: 3000, 20000 and --images)")
    parser.add_argument("--work", default="/work/scratch/hamming", help="where crops and codes are kept")
    args = parser.parse_args()
    print(describe(), flush=True)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    phash = dihedral_phash(work, args.images)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [3_000, 20_000, args.images]
    print("\n| codes | method | wall s | CPU s | wall / reference | rows |\n|---|---|---:|---:|---:|---:|")
    for n in sizes:
        run_size(phash, min(n, phash.shape[1]))


if __name__ == "__main__":
    main()
