"""Complete Hamming range search over 64-bit codes by multi-index hashing, on direct-address tables.

The pigeonhole principle behind it is FAISS's `IndexBinaryMultiHash`: cut each code into `tables` strings of
`table_bits` bits; two codes within `radius` bits differ in at most ⌊radius / tables⌋ bits of some string, so
looking up every key within `flips` bits of each of the probe's strings, and checking the candidates' full
distances, finds every code within the radius. What differs is the lookup. FAISS keeps each table in a hash map
of vectors and de-duplicates candidates in a set, ≈ 250 ns a key: 17–23 µs a probe at 10⁵ random codes (4 tables
of 16 bits, 68 keys and ≈ 100 candidates a probe). Here each table is the
codes' row numbers sorted by their string, with the start of every possible string's run (a table of 2^bits + 1
offsets, ≤ 2²² of them), and a block of probes is answered with array operations: its keys' runs expanded into
(probe, code) candidates, their distances counted (`np.bitwise_count`), the ones within the radius kept and
de-duplicated. On the same codes and probes: 3.7–3.9 µs a probe, the same pairs (docs/scale.md, Scale on one
machine has the figures). `nearest` answers each probe's k nearest within the radius in one sort of the block's
candidates; planned for fewer bits than it is asked to search, it is approximate, missing only codes that differ
from the probe in more than the probed flips in every table (`neighbours.hamming_nearest` measures how much).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

MAX_TABLE_BITS = 22  # a table's offsets: 2^22 + 1 of them, 16 MB as int32
PROBES_PER_BLOCK = 4_096  # probes whose keys are looked up at once (3 tables × 232 keys: 23 MB of offsets)
CANDIDATES_PER_BLOCK = 2_000_000  # (probe, code) candidates expanded at once: ≈ 60 MB of arrays


class DirectMultiIndex:
    """Codes of 8 bytes, searchable within a radius as FAISS's range_search is (same arguments and result)."""

    def __init__(self, codes: np.ndarray, tables: int, table_bits: int, flips: int):
        if codes.ndim != 2 or codes.shape[1] != 8 or not 1 <= table_bits <= MAX_TABLE_BITS or tables * table_bits > 64:
            raise ValueError("DirectMultiIndex holds 64-bit codes in tables of at most 22 bits")
        self.words = np.ascontiguousarray(codes, dtype=np.uint8).view(np.uint64).reshape(-1)
        self.tables, self.table_bits, self.flips = tables, table_bits, flips
        index_type = np.int32 if len(self.words) < 2**31 else np.int64
        self._rows, self._starts = [], []
        for table in range(tables):
            strings = self._strings(self.words, table)
            order = np.argsort(strings, kind="stable")
            self._rows.append(order.astype(index_type))
            self._starts.append(np.searchsorted(strings[order], np.arange(2**table_bits + 1)).astype(index_type))
        # Every key within `flips` bits of a string: the string XOR each of these masks.
        self._masks = np.array([sum(1 << bit for bit in chosen) for count in range(flips + 1)
                                for chosen in combinations(range(table_bits), count)], dtype=np.int64)

    def _strings(self, words: np.ndarray, table: int) -> np.ndarray:
        shifted = words >> np.uint64(table * self.table_bits)
        return (shifted & np.uint64(2**self.table_bits - 1)).astype(np.int64)

    def _runs(self, probe_words: np.ndarray, table: int) -> tuple[np.ndarray, np.ndarray]:
        """(first offset, length) of the run of each probe's keys in this table, shape (probes, keys)."""
        keys = self._strings(probe_words, table)[:, None] ^ self._masks[None, :]
        starts = self._starts[table]
        first = starts[keys]
        return first, starts[keys + 1] - first

    def range_search(self, probes: np.ndarray, radius: int):
        """(lims, distances, labels) as FAISS gives them: the codes at distance < `radius` of each probe, probe
        by probe (`lims[i]:lims[i + 1]`), here each probe's in ascending code order."""
        probe_words = np.ascontiguousarray(probes, dtype=np.uint8).view(np.uint64).reshape(-1)
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for start in range(0, len(probe_words), PROBES_PER_BLOCK):
            words = probe_words[start:start + PROBES_PER_BLOCK]
            runs = [self._runs(words, table) for table in range(self.tables)]
            for low, high in _budgeted(sum(length.sum(axis=1) for _first, length in runs), CANDIDATES_PER_BLOCK):
                probe, code, distance = self._search(words[low:high], [(f[low:high], n[low:high]) for f, n in runs],
                                                     radius - 1)
                found.append((probe + start + low, code, distance))
        if found:
            probe, labels, distances = (np.concatenate(parts) for parts in zip(*found))
        else:
            probe = labels = distances = np.zeros(0, dtype=np.int64)
        lims = np.zeros(len(probe_words) + 1, dtype=np.int64)
        np.cumsum(np.bincount(probe, minlength=len(probe_words)), out=lims[1:])
        return lims, distances.astype(np.int32), labels.astype(np.int64)

    def nearest(self, probes: np.ndarray, max_distance: int, k: int) -> np.ndarray:
        """(probe, code, distance) rows, ordered by probe then code: each probe's k nearest codes within
        `max_distance` bits, ties to the lower code — what `range_search` then `neighbours.nearest_per_probe` give,
        with one sort of the block's candidates instead of three (the codes of copy-heavy data put hundreds of
        candidates behind each probe: 10⁶ resampled vectors' thumbnails, ≈ 315 a probe)."""
        probe_words = np.ascontiguousarray(probes, dtype=np.uint8).view(np.uint64).reshape(-1)
        found = []
        for start in range(0, len(probe_words), PROBES_PER_BLOCK):
            words = probe_words[start:start + PROBES_PER_BLOCK]
            runs = [self._runs(words, table) for table in range(self.tables)]
            for low, high in _budgeted(sum(length.sum(axis=1) for _first, length in runs), CANDIDATES_PER_BLOCK):
                found.append(self._nearest(words[low:high], [(f[low:high], n[low:high]) for f, n in runs],
                                           max_distance, k, start + low))
        if not found:
            return np.zeros((0, 3), dtype=np.int64)
        return np.concatenate(found)

    def _close(self, probe_words: np.ndarray, runs, max_distance: int):
        """(probe, code, distance) of the candidates within max_distance, each (probe, code) once: a code is taken
        from the first table in which its string is within the probed flips of the probe's (the tables after it
        find it again)."""
        probes, codes, distances = [], [], []
        for table, (first, length) in enumerate(runs):
            first, length = first.reshape(-1), length.reshape(-1)
            total = int(length.sum())
            if not total:
                continue
            # Expand each key's run [first, first + length) of the sorted rows into one candidate per row.
            owner = np.repeat(np.arange(len(probe_words)).repeat(len(self._masks)), length)
            run_begins = np.cumsum(length) - length
            code = self._rows[table][np.repeat(first - run_begins, length) + np.arange(total)]
            distance = np.bitwise_count(probe_words[owner] ^ self.words[code])
            close = np.flatnonzero(distance <= max_distance)
            owner, code, distance = owner[close], code[close], distance[close]
            for earlier in range(table):
                differ = self._strings(probe_words[owner], earlier) ^ self._strings(self.words[code], earlier)
                new = np.bitwise_count(differ) > self.flips
                owner, code, distance = owner[new], code[new], distance[new]
            probes.append(owner)
            codes.append(code)
            distances.append(distance)
        return probes, codes, distances

    def _nearest(self, probe_words: np.ndarray, runs, max_distance: int, k: int, offset: int) -> np.ndarray:
        """`nearest` of one budgeted block of probes, numbered from `offset`."""
        probes, codes, distances = self._close(probe_words, runs, max_distance)
        if not probes:
            return np.zeros((0, 3), dtype=np.int64)
        probe = np.concatenate(probes).astype(np.int64)
        code = np.concatenate(codes).astype(np.int64)
        distance = np.concatenate(distances).astype(np.int64)
        # One sort by (probe, distance, code) ranks each probe's candidates; its first k are kept.
        code_span, distance_span = len(self.words), 65
        order = np.argsort((probe * distance_span + distance) * code_span + code)
        probe, code, distance = probe[order], code[order], distance[order]
        first = np.flatnonzero(np.r_[True, probe[1:] != probe[:-1]])
        rank = np.arange(len(probe)) - np.repeat(first, np.diff(np.r_[first, len(probe)]))
        kept = np.flatnonzero(rank < k)
        probe, code, distance = probe[kept], code[kept], distance[kept]
        back = np.argsort(probe * code_span + code)  # (probe, code) order, as the callers read rows
        return np.stack([probe[back] + offset, code[back], distance[back]], axis=1)

    def _search(self, probe_words: np.ndarray, runs, max_distance: int):
        """(probe, code, distance) of every code within max_distance of these probes, ordered by probe then code;
        `runs`: each table's (first offset, length) of the probes' keys."""
        probes, codes, distances = self._close(probe_words, runs, max_distance)
        if not probes:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        probe = np.concatenate(probes).astype(np.int64)
        code = np.concatenate(codes).astype(np.int64)
        order = np.argsort(probe * len(self.words) + code)
        return probe[order], code[order], np.concatenate(distances).astype(np.int64)[order]


def _budgeted(per_probe: np.ndarray, budget: int):
    """Consecutive probe ranges whose candidates add up to about `budget` (a probe in a crowded region of the codes
    can have many: copies hash alike), each at least one probe: memory stays bounded whatever the codes are."""
    ends = np.cumsum(per_probe)
    start = 0
    while start < len(per_probe):
        already = ends[start - 1] if start else 0
        stop = min(len(per_probe), max(int(np.searchsorted(ends, already + budget, side="right")), start + 1))
        yield start, stop
        start = stop
