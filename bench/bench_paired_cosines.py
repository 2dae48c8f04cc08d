"""Paired cosines over a real embedding store inside a memory limit: the second matrix's tile size compared.

    python bench/bench_paired_cosines.py STORE.npy [--filler-gb 2.9] [--tiles 256,32] [--pairs-per-row 14] [--free]

STORE.npy: a compacted embedding store chunk (float16, one row per content; e.g. the cache's
embeddings/<key>/chunk-*.npy after an audit). Each tile size runs in a child process: the store is evicted from
the page cache, the child enters a 4 GiB memory cgroup (page cache included; `memory_limit.py`, needs root) unless
--free, holds --filler-gb of anonymous memory (the duplicate decision's arrays at that point: ≈ 3.4 GiB at 10⁶
with the pairs), and computes `neighbours.paired_cosines` of random pairs (each row with --pairs-per-row random
partners: the worst case for locality). Prints wall and CPU time, bytes read and a checksum (the same bits
whatever the tiles) per tile size, and each time as a ratio to the first tile size's, measured in the same run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def child(store: str, tile_mb: int, filler_gb: float, pairs_per_row: int, free: bool) -> None:
    from memory_limit import MemoryLimit, evict, parse_size

    evict(Path(store).parent)
    limit = None if free else MemoryLimit(parse_size("4G"), name=f"bench-paired-cosines-{tile_mb}").enter()
    from auditor.similarity import neighbours

    x = np.load(store, mmap_mode="r")
    n = x.shape[0]
    query = np.repeat(np.arange(n, dtype=np.int64), pairs_per_row)
    target = np.random.default_rng(0).integers(0, n, len(query))
    filler = np.ones(int(filler_gb * 2**30), dtype=np.uint8)  # resident: every page written
    real = neighbours.local_order
    neighbours.local_order = lambda rx, ry, bx, by: real(rx, ry, bx, by, sweep_tile_bytes=tile_mb * 2**20)

    def read_bytes() -> int:
        return int(next(line for line in open("/proc/self/io") if line.startswith("read_bytes")).split()[1])

    r0, t0, c0 = read_bytes(), time.time(), time.process_time()
    cosines = neighbours.paired_cosines(x, query, x, target)
    wall, cpu, read = time.time() - t0, time.process_time() - c0, read_bytes() - r0
    print(f"{tile_mb}\t{wall:.2f}\t{cpu:.2f}\t{read / 1e9:.1f}\t{float(np.float64(cosines).sum()):.6f}\t"
          f"{'free' if free else limit.report()}", flush=True)
    del filler
    if limit:
        limit.leave()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store")
    parser.add_argument("--filler-gb", type=float, default=2.9)
    parser.add_argument("--tiles", default="256,32", help="tile sizes of the second matrix, MB (the first is the reference)")
    parser.add_argument("--pairs-per-row", type=int, default=14)
    parser.add_argument("--free", action="store_true", help="no memory limit, no filler")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args.store, args.child, 0.0 if args.free else args.filler_gb, args.pairs_per_row, args.free)
    rows = []
    for tile_mb in [int(t) for t in args.tiles.split(",")]:
        command = [sys.executable, __file__, args.store, "--child", str(tile_mb), "--filler-gb", str(args.filler_gb),
                   "--pairs-per-row", str(args.pairs_per_row)] + (["--free"] if args.free else [])
        line = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rows.append(line.split("\t"))
    reference = float(rows[0][1])
    print("tile MB | wall s | CPU s | GB read | wall / reference's | checksum | cgroup")
    for tile, wall, cpu, read, checksum, cgroup in rows:
        ratio = f"{float(wall) / reference:.2f}" if reference > 0 else "—"
        print(f"{tile} | {wall} | {cpu} | {read} | {ratio} | {checksum} | {cgroup}")


if __name__ == "__main__":
    main()
