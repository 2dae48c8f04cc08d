"""Pixel evidence remembered across audits: the aligned correlation of a pair of thumbnails and the dihedral
hash codes of one thumbnail, keyed by the thumbnails' own bytes.

Both are pure functions of 32×32 grey thumbnails, and they are most of what the duplicate decision costs
(cats/dogs, 3 000 photos: 5.4 of 7.8 CPU-seconds). A gate run that adds 1 % new images, or an audit of a
dataset that grew, sees almost the same candidate pairs and calibration copies as the audit before it, so
only the new pairs are computed. Keys are built from a hash of each thumbnail's bytes (not file names), so a
key can only ever name the same computation; `PIXEL_EVIDENCE_VERSION` goes into every thumbnail's hash and must
change whenever pixels.py's correlation or hashes change. Each distinct thumbnail is hashed once per call and a
pair's key is its two thumbnails' digests and the question asked, laid side by side (hashing both thumbnails
again for every pair cost ≈ 12 µs a pair: ≈ 10 CPU-s of the 60 000-crop decision's 855 000 candidate pairs).
"""

from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np

PIXEL_EVIDENCE_VERSION = b"pixel-evidence-v4"  # v4: exact window norms, flat templates match nothing
DIGEST_BYTES = 16
CODE_BYTES = 16 * 8  # 8 variants × (8-byte pHash + 8-byte dHash)
CORRELATION_BYTES = 5  # float32 correlation + the variant it was reached under


class PixelMemo:
    """Looks pixel evidence up in a store (`get(keys) -> {key: bytes}`, `put([(key, bytes)])`, e.g. the
    SQLite cache) and computes only what is missing."""

    def __init__(self, get: Callable[[list[bytes]], dict[bytes, bytes]],
                 put: Callable[[list[tuple[bytes, bytes]]], None]):
        self._get, self._put = get, put
        self.computed = 0  # pairs and thumbnails computed (not found), for tests and timings
        self.reused = 0

    def correlations(self, a: np.ndarray, b: np.ndarray, extra_variant: np.ndarray, every_variant: np.ndarray,
                     compute: Callable, digest_a: np.ndarray | None = None,
                     digest_b: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`compute(a, b, extra_variant, every_variant) -> (correlation float32, variant int64)`, remembered
        per pair (a[i], b[i], extra_variant[i], every_variant[i]). `digest_a` / `digest_b`: the thumbnails'
        `digests`, when the caller has them (each distinct thumbnail hashed once); else hashed here."""
        n = len(a)
        every = np.broadcast_to(np.asarray(every_variant, dtype=bool), (n,))
        extra = np.asarray(extra_variant, dtype=np.int64)
        digest_a = digests(a) if digest_a is None else digest_a
        digest_b = digests(b) if digest_b is None else digest_b
        keys = _rows_as_bytes(np.concatenate([np.full((n, 1), ord("r"), np.uint8), digest_a, digest_b,
                                              (extra + 1).astype(np.uint8)[:, None], every.astype(np.uint8)[:, None]],
                                             axis=1))
        correlation = np.zeros(n, dtype=np.float32)
        variant = np.zeros(n, dtype=np.int64)
        found = self._get(keys) if keys else {}
        values = [found.get(key, b"") for key in keys]
        # A stored value is 4 bytes of float32 and the variant; anything else (damaged) is recomputed.
        usable = np.fromiter((len(v) == CORRELATION_BYTES and v[4] <= 7 for v in values), dtype=bool, count=n)
        if usable.any():
            stored = np.frombuffer(b"".join(v for v, ok in zip(values, usable) if ok), dtype=np.uint8)
            stored = stored.reshape(-1, CORRELATION_BYTES)
            correlation[usable] = stored[:, :4].copy().view(np.float32).ravel()
            variant[usable] = stored[:, 4]
        missing = np.flatnonzero(~usable)
        self.reused += n - len(missing)
        self.computed += len(missing)
        if len(missing):
            c, v = compute(a[missing], b[missing], extra[missing], every[missing])
            correlation[missing], variant[missing] = c, v
            packed = _rows_as_bytes(np.concatenate([np.asarray(c, dtype=np.float32).reshape(-1, 1).view(np.uint8),
                                                    np.asarray(v, dtype=np.uint8)[:, None]], axis=1))
            self._put([(keys[i], value) for i, value in zip(missing.tolist(), packed)])
        return correlation, variant

    def dihedral_codes(self, thumbs: np.ndarray, compute: Callable) -> tuple[np.ndarray, np.ndarray]:
        """`compute(thumbs) -> (phash, dhash)`, each (8, n, 8) uint8, remembered per thumbnail."""
        n = len(thumbs)
        keys = _rows_as_bytes(np.concatenate([np.full((n, 1), ord("c"), np.uint8), digests(thumbs)], axis=1))
        phash = np.zeros((8, n, 8), dtype=np.uint8)
        dhash = np.zeros((8, n, 8), dtype=np.uint8)

        def fill(i: int, value: bytes) -> bool:
            if len(value) != CODE_BYTES:
                return False
            codes = np.frombuffer(value, dtype=np.uint8).reshape(2, 8, 8)
            phash[:, i], dhash[:, i] = codes[0], codes[1]
            return True

        missing = self._fill(keys, fill)
        if len(missing):
            p, d = compute(np.ascontiguousarray(thumbs[missing]))
            phash[:, missing], dhash[:, missing] = p, d
            self._put([(keys[i], np.stack([p[:, j], d[:, j]]).tobytes()) for j, i in enumerate(missing)])
        return phash, dhash

    def _fill(self, keys: list[bytes], fill: Callable[[int, bytes], bool]) -> np.ndarray:
        """Fill what the store has (a damaged value counts as missing); the positions still missing."""
        found = self._get(keys) if keys else {}
        missing = [i for i, key in enumerate(keys) if key not in found or not fill(i, found[key])]
        self.reused += len(keys) - len(missing)
        self.computed += len(missing)
        return np.asarray(missing, dtype=np.int64)


def digests(thumbs: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """(len(rows), DIGEST_BYTES) uint8: a keyed BLAKE2b of each thumbnail's bytes (thumbs[rows], or every
    thumbnail), each distinct row hashed once."""
    thumbs = np.ascontiguousarray(thumbs, dtype=np.uint8)
    rows = np.arange(len(thumbs)) if rows is None else np.asarray(rows, dtype=np.int64)
    unique, inverse = np.unique(rows, return_inverse=True)
    joined = b"".join(hashlib.blake2b(thumbs[r].tobytes(), digest_size=DIGEST_BYTES, key=PIXEL_EVIDENCE_VERSION).digest()
                      for r in unique)
    return np.frombuffer(joined, dtype=np.uint8).reshape(len(unique), DIGEST_BYTES)[inverse.reshape(-1)]


def digest_table(thumbs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(len(thumbs), DIGEST_BYTES) uint8: the `digests` of the thumbnails that `rows` names, by row (zeros for the
    others), each hashed once: a caller with a row per pair looks digests up a chunk at a time instead of holding
    one per pair."""
    used = np.zeros(len(thumbs), dtype=bool)
    used[rows] = True
    table = np.zeros((len(thumbs), DIGEST_BYTES), dtype=np.uint8)
    named = np.flatnonzero(used)
    if len(named):
        table[named] = digests(thumbs, named)
    return table


def _rows_as_bytes(rows: np.ndarray) -> list[bytes]:
    """Each row of a uint8 matrix as one bytes object (without a Python loop over its columns)."""
    rows = np.ascontiguousarray(rows, dtype=np.uint8)
    return rows.view(np.dtype((np.void, rows.shape[1]))).ravel().tolist() if len(rows) else []
