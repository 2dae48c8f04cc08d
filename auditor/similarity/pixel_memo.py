"""Pixel evidence remembered across audits: the aligned correlation of a pair of thumbnails and the dihedral
hash codes of one thumbnail, keyed by the thumbnails' own bytes.

Both are pure functions of 32×32 grey thumbnails, and they are most of what the duplicate decision costs
(cats/dogs, 3 000 photos: 5.4 of 7.8 CPU-seconds). A gate run that adds 1 % new images, or an audit of a
dataset that grew, sees almost the same candidate pairs and calibration copies as the audit before it, so
only the new pairs are computed. Keys are built from a hash of each thumbnail's bytes (not file names), so a
key can only ever name the same computation; `PIXEL_EVIDENCE_VERSION` goes into every thumbnail's hash and must
change whenever pixels.py's correlation or hashes change. Each distinct thumbnail is hashed once per memo, and a
pair's 128-bit key is mixed from its two thumbnails' digests and the question asked with numpy word operations
(`pair_keys`; hashing both thumbnails again for every pair cost ≈ 12 µs a pair: ≈ 10 CPU-s of the 60 000-crop
decision's 855 000 candidate pairs). The rows live in encoding/keyed_rows.py's segment files (the cache's
`pixel-evidence/`), found without Python work per key.
"""

from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np

PIXEL_EVIDENCE_VERSION = b"pixel-evidence-v4"  # v4: exact window norms, flat templates match nothing
STORE_VERSION = "pixel-evidence-rows-v1"  # how keys are made from digests and values packed into words
DIGEST_BYTES = 16
CODE_WORDS = 16  # 8 variants × (8-byte pHash + 8-byte dHash)
CODE_CHUNK = 65_536  # thumbnails whose codes are looked up at once
HELD_TABLES = 4  # thumbnail tables whose digests a memo keeps (the dataset's, the calibration copies', …)
# splitmix64's finaliser (a bijection of 64-bit words) and two odd constants that keep the pair's halves apart
MIX_1, MIX_2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
SALT_1, SALT_2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD1B54A32D192ED03)


class PixelMemo:
    """Looks pixel evidence up in two stores (encoding/keyed_rows.KeyedRows: `pairs` one word a row, `codes`
    CODE_WORDS) and computes only what is missing. `flush` writes what was computed."""

    def __init__(self, pairs, codes):
        self.pairs, self.codes = pairs, codes
        self.computed = 0  # pairs and thumbnails computed (not found), for tests and timings
        self.reused = 0
        self._digest_tables: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def correlations(self, a: np.ndarray, b: np.ndarray, extra_variant: np.ndarray, every_variant: np.ndarray,
                     compute: Callable, digest_a: np.ndarray | None = None,
                     digest_b: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`compute(a, b, extra_variant, every_variant) -> (correlation float32, variant int64)`, remembered
        per pair (a[i], b[i], extra_variant[i], every_variant[i]). `digest_a` / `digest_b`: the thumbnails'
        `digests`, when the caller has them (each distinct thumbnail hashed once); else hashed here. With the
        digests given, a and b may be anything with a length that gives thumbnails when indexed by an array of
        positions: only the pairs not found are read."""
        n = len(a)
        every = np.broadcast_to(np.asarray(every_variant, dtype=bool), (n,))
        extra = np.asarray(extra_variant, dtype=np.int64)
        digest_a = digests(a) if digest_a is None else digest_a
        digest_b = digests(b) if digest_b is None else digest_b
        key1, key2 = pair_keys(digest_a, digest_b, extra, every)
        found, values = self.pairs.get(key1, key2)
        word = values[:, 0]
        stored_variant = (word >> np.uint64(32)).astype(np.int64)
        usable = found & (stored_variant <= 7)  # anything else (damaged) is recomputed
        correlation = (word & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.float32).copy()
        correlation[~usable] = 0
        variant = np.where(usable, stored_variant, 0)
        missing = np.flatnonzero(~usable)
        self.reused += n - len(missing)
        self.computed += len(missing)
        if len(missing):
            c, v = compute(a[missing], b[missing], extra[missing], every[missing])
            correlation[missing], variant[missing] = c, v
            packed = (np.asarray(c, dtype=np.float32).view(np.uint32).astype(np.uint64)
                      | (np.asarray(v, dtype=np.uint64) << np.uint64(32)))
            self.pairs.add(key1[missing], key2[missing], packed[:, None])
        return correlation, variant

    def dihedral_codes(self, thumbs: np.ndarray, compute: Callable) -> tuple[np.ndarray, np.ndarray]:
        """`compute(thumbs) -> (phash, dhash)`, each (8, n, 8) uint8, remembered per thumbnail (CODE_CHUNK
        thumbnails at a time: a row of codes is 128 bytes, 10⁶ of them at once would be 0.13 GB a copy)."""
        n = len(thumbs)
        phash = np.zeros((8, n, 8), dtype=np.uint8)
        dhash = np.zeros((8, n, 8), dtype=np.uint8)
        halves = self.digest_table(thumbs, np.arange(n)).view(np.uint64)
        for start in range(0, n, CODE_CHUNK):
            part = slice(start, min(n, start + CODE_CHUNK))
            key1, key2 = _mix(halves[part, 0] + SALT_1), _mix(halves[part, 1] + SALT_2)
            found, values = self.codes.get(key1, key2)
            codes = values.view(np.uint8).reshape(-1, 2, 8, 8)
            phash[:, part], dhash[:, part] = codes[:, 0].transpose(1, 0, 2), codes[:, 1].transpose(1, 0, 2)
            missing = np.flatnonzero(~found)
            self.reused += len(found) - len(missing)
            self.computed += len(missing)
            if len(missing):
                p, d = compute(np.ascontiguousarray(thumbs[start + missing]))
                phash[:, start + missing], dhash[:, start + missing] = p, d
                rows = np.ascontiguousarray(np.stack([p, d]).transpose(2, 0, 1, 3)).view(np.uint64)
                self.codes.add(key1[missing], key2[missing], rows.reshape(len(missing), CODE_WORDS))
        self.flush()
        return phash, dhash

    def digest_table(self, thumbs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(len(thumbs), DIGEST_BYTES) uint8: the `digests` of the thumbnails `rows` names, by row (zeros for the
        others), each thumbnail hashed once in this memo's life (the decision asks for the dataset's thumbnails'
        digests for their codes and again for their pairs: ≈ 2.5 s a pass at 10⁶): a caller with a row per pair
        looks digests up a chunk at a time instead of holding one per pair."""
        held = self._digest_tables.get(id(thumbs))
        if held is None or held[0] is not thumbs:
            if len(self._digest_tables) >= HELD_TABLES:  # the oldest goes (dicts keep insertion order)
                del self._digest_tables[next(iter(self._digest_tables))]
            held = self._digest_tables[id(thumbs)] = (thumbs, np.zeros((len(thumbs), DIGEST_BYTES), np.uint8),
                                                      np.zeros(len(thumbs), bool))
        _, table, known = held
        wanted = np.zeros(len(thumbs), dtype=bool)
        wanted[rows] = True
        new = np.flatnonzero(wanted & ~known)
        if len(new):
            table[new] = digests(thumbs, new)
            known[new] = True
        return table

    def flush(self) -> None:
        """Write what was computed (the stores hold it in memory until then)."""
        self.pairs.flush()
        self.codes.flush()


def pair_keys(digest_a: np.ndarray, digest_b: np.ndarray, extra: np.ndarray, every: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """The 128-bit key of each pair's question: its two thumbnails' digests and the variants asked, in two words.
    Each word mixes one half of each digest with the question through bijections, so two pairs that differ in one
    part never share a key (the word made from the half that differs differs), and pairs that differ in several
    share it with chance 2⁻¹²⁸ (the digests are BLAKE2b); the order of the two thumbnails matters (a's variants
    are aligned with b)."""
    a, b = np.ascontiguousarray(digest_a).view(np.uint64), np.ascontiguousarray(digest_b).view(np.uint64)
    question = (np.asarray(extra, np.int64) + 1).astype(np.uint64) * np.uint64(2) + np.asarray(every, np.uint64)
    key1 = _mix(a[:, 0] + _mix(b[:, 0] + _mix(question + SALT_1)))
    key2 = _mix(a[:, 1] + _mix(b[:, 1] + _mix(question + SALT_2)))
    return key1, key2


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of 64-bit words that spreads every input bit over the output."""
    x = np.asarray(x, dtype=np.uint64)
    x = (x ^ (x >> np.uint64(30))) * MIX_1
    x = (x ^ (x >> np.uint64(27))) * MIX_2
    return x ^ (x >> np.uint64(31))


def digests(thumbs: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """(len(rows), DIGEST_BYTES) uint8: a keyed BLAKE2b of each thumbnail's bytes (thumbs[rows], or every
    thumbnail), each distinct row hashed once."""
    thumbs = np.ascontiguousarray(thumbs, dtype=np.uint8)
    rows = np.arange(len(thumbs)) if rows is None else np.asarray(rows, dtype=np.int64)
    unique, inverse = np.unique(rows, return_inverse=True)
    joined = b"".join(hashlib.blake2b(thumbs[r].tobytes(), digest_size=DIGEST_BYTES, key=PIXEL_EVIDENCE_VERSION).digest()
                      for r in unique)
    return np.frombuffer(joined, dtype=np.uint8).reshape(len(unique), DIGEST_BYTES)[inverse.reshape(-1)]
