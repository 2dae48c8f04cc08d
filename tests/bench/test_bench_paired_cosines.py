"""bench/bench_paired_cosines.py: every tile size computes the same cosines, and each is timed against the first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def test_each_tile_size_gives_the_same_checksum_and_a_ratio_to_the_first(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3_000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    store = tmp_path / "embeddings" / "chunk-a.npy"
    store.parent.mkdir()
    np.save(store, x.astype(np.float16))
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_paired_cosines.py"), str(store), "--free",
                          "--tiles", "1,0", "--pairs-per-row", "30"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    rows = [line.split(" | ") for line in out.splitlines()[1:]]
    assert [row[0] for row in rows] == ["1", "0"]
    assert rows[0][4] in ("1.00", "—") and rows[0][5] == rows[1][5]  # the same bits whatever the tiles
    assert all(row[6] == "free" for row in rows)
