"""Pixel evidence remembered across audits: the aligned correlation of a pair of thumbnails and the dihedral
hash codes of one thumbnail, keyed by the thumbnails' own bytes.

Both are pure functions of 32×32 grey thumbnails, and they are most of what the duplicate decision costs
(cats/dogs, 3 000 photos: 5.4 of 7.8 CPU-seconds). A gate run that adds 1 % new images, or an audit of a
dataset that grew, sees almost the same candidate pairs and calibration copies as the audit before it, so
only the new pairs are computed. Keys hash the thumbnails' bytes (not file names), so a key can only ever
name the same computation; `PIXEL_EVIDENCE_VERSION` goes into every key and must change whenever
pixels.py's correlation or hashes change.
"""

from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np

PIXEL_EVIDENCE_VERSION = b"pixel-evidence-v2"
CODE_BYTES = 16 * 8  # 8 variants × (8-byte pHash + 8-byte dHash)


class PixelMemo:
    """Looks pixel evidence up in a store (`get(keys) -> {key: bytes}`, `put([(key, bytes)])`, e.g. the
    SQLite cache) and computes only what is missing."""

    def __init__(self, get: Callable[[list[bytes]], dict[bytes, bytes]],
                 put: Callable[[list[tuple[bytes, bytes]]], None]):
        self._get, self._put = get, put
        self.computed = 0  # pairs and thumbnails computed (not found), for tests and timings
        self.reused = 0

    def correlations(self, a: np.ndarray, b: np.ndarray, extra_variant: np.ndarray, every_variant: np.ndarray,
                     compute: Callable) -> tuple[np.ndarray, np.ndarray]:
        """`compute(a, b, extra_variant, every_variant) -> (correlation float32, variant int64)`, remembered
        per pair (a[i], b[i], extra_variant[i], every_variant[i])."""
        n = len(a)
        every = np.broadcast_to(np.asarray(every_variant, dtype=bool), (n,))
        extra = np.asarray(extra_variant, dtype=np.int64)
        keys = [_key(b"corr", a[i].tobytes(), b[i].tobytes(), bytes([int(extra[i]) + 1, int(every[i])])) for i in range(n)]
        correlation = np.zeros(n, dtype=np.float32)
        variant = np.zeros(n, dtype=np.int64)
        missing = self._fill(keys, lambda i, value: _unpack_correlation(value, correlation, variant, i))
        if len(missing):
            c, v = compute(a[missing], b[missing], extra[missing], every[missing])
            correlation[missing], variant[missing] = c, v
            self._put([(keys[i], np.float32(c[j]).tobytes() + bytes([int(v[j])])) for j, i in enumerate(missing)])
        return correlation, variant

    def dihedral_codes(self, thumbs: np.ndarray, compute: Callable) -> tuple[np.ndarray, np.ndarray]:
        """`compute(thumbs) -> (phash, dhash)`, each (8, n, 8) uint8, remembered per thumbnail."""
        n = len(thumbs)
        keys = [_key(b"codes", thumbs[i].tobytes()) for i in range(n)]
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


def _key(*parts: bytes) -> bytes:
    digest = hashlib.blake2b(PIXEL_EVIDENCE_VERSION, digest_size=16)
    for part in parts:
        digest.update(len(part).to_bytes(4, "little"))
        digest.update(part)
    return digest.digest()


def _unpack_correlation(value: bytes, correlation: np.ndarray, variant: np.ndarray, i: int) -> bool:
    if len(value) != 5 or value[4] > 7:
        return False
    correlation[i] = np.frombuffer(value[:4], dtype=np.float32)[0]
    variant[i] = value[4]
    return True
