"""Fixed-width rows of uint64 words under 128-bit keys that are hashes, kept as sorted segment files: the store of
the pixel evidence (similarity/pixel_memo.py).

The keys are uniform (they are hashes of hashes), so a segment finds one without a search tree: the top bits of
its first half name a bucket of about four keys, and the bucket is scanned. A lookup is a few vectorised gathers
for a whole chunk of keys, with no Python work per key (the SQLite table this replaces took 3.9 µs a key: 55 s
for the 14 M pairs the decision looks up at 10⁶ images).

    <folder>/seg-<random>.npy   a (2 + width, n) uint64 array: row 0 the keys' first halves (sorted), row 1
                                their second halves, the rest the values; written atomically, read memory-mapped

Rows added in a run are held in memory and written as a segment by `flush` (or once `FLUSH_ROWS` wait). Segments
are merged as in a log-structured store: after a segment is written, while the smallest is at least half the
size of the next smallest, the two become one (merged a key range at a time, so the merge holds a range, not the
segments), so a store holds a logarithmic number of segments however many runs added to it. Several audits may
share a folder: each writes its own segments, a merge deletes only the segments it read, and a segment that
vanished (another audit merged it) or is damaged is skipped — its rows are only work saved, and are computed again.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

FLUSH_ROWS = 1 << 21  # rows held in memory before they are written (48 MB at one value word)
BUCKET_KEYS = 4  # keys a bucket holds on average
MAX_BUCKET_BITS = 22
MERGE_RANGE_ROWS = 1 << 20  # rows merged at once
ABANDONED_S = 3600  # a temporary segment file this old was left by a run that was killed while writing it


class Segment:
    """One sorted table of keys and values (memory-mapped from its file, or in memory), with its bucket starts."""

    def __init__(self, table: np.ndarray, path: Path | None = None):
        self.table, self.path = table, path
        self.keys1, self.keys2, self.values = table[0], table[1], table[2:]
        n = table.shape[1]
        bits = int(min(MAX_BUCKET_BITS, max(1, np.ceil(np.log2(max(n, 2) / BUCKET_KEYS)))))
        self.shift = np.uint64(64 - bits)
        bounds = np.arange(1 << bits, dtype=np.uint64) << self.shift
        starts = np.searchsorted(self.keys1, bounds)  # the first key of each bucket (keys1 is sorted)
        self.starts = np.append(starts, n).astype(np.int32 if n < 2**31 else np.int64)

    def __len__(self) -> int:
        return self.table.shape[1]

    def find(self, q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
        """The position of each key (q1[i], q2[i]) in this segment, or -1."""
        bucket = (q1 >> self.shift).astype(np.int64)
        position = self.starts[bucket].astype(np.int64)
        end = self.starts[bucket + 1]
        found = np.full(len(q1), -1, dtype=np.int64)
        live = np.flatnonzero(position < end)
        while len(live):  # one step along every live bucket at once (about four steps in all)
            at = position[live]
            here = self.keys1[at]
            hit = (here == q1[live]) & (self.keys2[at] == q2[live])
            found[live[hit]] = at[hit]
            position[live] = at + 1
            # sorted within the bucket: past the key's first half, the key is not here
            live = live[~hit & (here <= q1[live]) & (at + 1 < end[live])]
        return found


class KeyedRows:
    """Rows of `width` uint64 words under (key1, key2) keys, kept in `folder` (None: in memory, for --no-cache)."""

    def __init__(self, folder: Path | None, width: int):
        self.folder, self.width = (None if folder is None else Path(folder)), width
        self._stored: list[Segment] | None = None  # the folder's segments, largest first (read at first use)
        self._fresh: list[Segment] = []  # rows added since the last flush, in memory, largest first

    # Reading ---------------------------------------------------------------------------------------------
    def get(self, key1: np.ndarray, key2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found, values): whether each key is held, and its row ((n, width) uint64; zeros where not found)."""
        key1, key2 = np.asarray(key1, np.uint64), np.asarray(key2, np.uint64)
        found = np.zeros(len(key1), dtype=bool)
        values = np.zeros((len(key1), self.width), dtype=np.uint64)
        for segment in self._segments() + self._fresh:
            ask = np.flatnonzero(~found)
            if not len(ask):
                break
            at = segment.find(key1[ask], key2[ask])
            hit = at >= 0
            values[ask[hit]] = segment.values[:, at[hit]].T
            found[ask[hit]] = True
        return found, values

    def _segments(self) -> list[Segment]:
        if self._stored is None:
            self._stored = []
            if self.folder is not None:
                _remove_abandoned(self.folder)
                for path in self.folder.glob("seg-*.npy"):
                    segment = self._read(path)
                    if segment is not None:
                        self._stored.append(segment)
                self._stored.sort(key=len, reverse=True)
        return self._stored

    def _read(self, path: Path) -> Segment | None:
        """The segment in `path`, or None where it vanished or is not a well-formed segment of this width."""
        try:
            table = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if table.ndim != 2 or table.shape[0] != 2 + self.width or table.dtype != np.dtype("<u8"):
            return None
        if not _is_sorted(table[0]):
            return None
        return Segment(table, path)

    # Writing ---------------------------------------------------------------------------------------------
    def add(self, key1: np.ndarray, key2: np.ndarray, values: np.ndarray) -> None:
        """Hold these rows (values (n, width) uint64); written by `flush`, or now once FLUSH_ROWS wait."""
        if not len(key1):
            return
        table = np.empty((2 + self.width, len(key1)), dtype=np.uint64)
        table[0], table[1] = key1, key2
        table[2:] = np.asarray(values, dtype=np.uint64).reshape(len(key1), self.width).T
        self._fresh.append(Segment(_sorted_unique(table)))
        _merge_alike(self._fresh, lambda pair: Segment(_sorted_unique(np.concatenate([s.table for s in pair], axis=1))))
        if self.folder is not None and sum(len(s) for s in self._fresh) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write the rows held in memory as a segment, then merge the smallest segments while they are alike in
        size. A folder that cannot be written keeps them in memory for this run (they are only saved work)."""
        if not self._fresh or self.folder is None:
            return
        stored = self._segments()  # listed before this segment is written, so as not to list it twice
        segment = self._write(self._fresh)
        if segment is None:
            return
        self._fresh = []
        stored.append(segment)

        def merged(pair: list[Segment]) -> Segment | None:
            out = self._write(pair)
            if out is not None:
                for old in pair:
                    _remove(old.path)
            return out

        _merge_alike(stored, merged)

    def _write(self, segments: list[Segment]) -> Segment | None:
        """The rows of `segments` (each sorted) as one new segment file, merged a key range at a time, or None
        where it cannot be written."""
        from auditor.atomic import create_temporary

        total = sum(len(s) for s in segments)
        try:
            fd, temporary = create_temporary(self.folder / "seg.npy")
            os.close(fd)
        except OSError:
            return None
        try:
            out = np.lib.format.open_memmap(temporary, mode="w+", dtype="<u8", shape=(2 + self.width, total))
            _reserve(temporary)  # a write into a mapped page the disk has no room for would kill the process
            written = 0
            for part in _ranges(segments, total):
                out[:, written:written + part.shape[1]] = part
                written += part.shape[1]
            out.flush()
            del out
            if written < total:  # a key held by two segments was written once: cut the file to what was written
                _shrink(temporary, written)
            destination = self.folder / f"seg-{os.urandom(8).hex()}.npy"
            os.replace(temporary, destination)
        except (OSError, ValueError):
            Path(temporary).unlink(missing_ok=True)
            return None
        segment = self._read(destination)
        if segment is None:  # not readable as written (a disk that lost it): not left to be skipped forever
            _remove(destination)
        return segment


def _reserve(path: str) -> None:
    """Reserve the disk blocks of a file made sparse (ENOSPC here is an OSError, not SIGBUS at the first write)."""
    if hasattr(os, "posix_fallocate"):
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        finally:
            os.close(fd)


def _is_sorted(keys: np.ndarray) -> bool:
    """Whether keys never fall, read a range at a time (a memory-mapped segment is not copied whole)."""
    for start in range(0, len(keys) - 1, MERGE_RANGE_ROWS):
        part = np.asarray(keys[start:start + MERGE_RANGE_ROWS + 1])
        if np.any(part[1:] < part[:-1]):
            return False
    return True


def _merge_alike(segments: list[Segment], merge) -> None:
    """Log-structured upkeep of a list of segments, largest first: while the smallest holds at least half as many
    rows as the next, the two become one (`merge(pair)`; None: leave them)."""
    while len(segments) > 1 and 2 * len(segments[-1]) >= len(segments[-2]):
        merged = merge(segments[-2:])
        if merged is None:
            return
        segments[-2:] = [merged]
        segments.sort(key=len, reverse=True)


def _ranges(segments: list[Segment], total: int):
    """The rows of sorted segments merged in key order, one table per range of keys, equal keys once."""
    bits = int(min(30, max(0, np.ceil(np.log2(max(total, 1) / MERGE_RANGE_ROWS)))))
    bounds = [np.uint64(j) << np.uint64(64 - bits) for j in range(1, 1 << bits)] if bits else []
    cuts = [np.concatenate([[0], np.searchsorted(s.keys1, bounds), [len(s)]]).astype(np.int64) for s in segments]
    for j in range(len(bounds) + 1):
        parts = [np.asarray(s.table[:, c[j]:c[j + 1]]) for s, c in zip(segments, cuts)]
        yield _sorted_unique(np.concatenate(parts, axis=1))


def _sorted_unique(table: np.ndarray) -> np.ndarray:
    """The table's columns ordered by the keys' first halves, a key held twice kept once. A stable sort on the
    first half alone: the tables merged are sorted runs, which it merges in linear time (4 M rows of two runs:
    0.035 s, against 1.27 s for a two-key lexsort). Two keys sharing a first half (chance 2⁻⁶⁴ a pair) may then
    lie apart, so such a key could be kept twice: harmless, a lookup takes the first."""
    table = table[:, np.argsort(table[0], kind="stable")]
    repeated = np.zeros(table.shape[1], dtype=bool)
    repeated[1:] = (table[0, 1:] == table[0, :-1]) & (table[1, 1:] == table[1, :-1])
    return table[:, ~repeated] if repeated.any() else table


def _shrink(path: str, used: int) -> None:
    """Rewrite a .npy table as its first `used` columns (rare: only where two audits computed the same rows)."""
    table = np.load(path, mmap_mode="r")
    kept = np.ascontiguousarray(table[:, :used])
    del table
    with open(path, "wb") as handle:  # a handle: np.save would add ".npy" to the name
        np.save(handle, kept)


def _remove_abandoned(folder: Path) -> None:
    """Delete temporary segment files more than ABANDONED_S old (a run killed while writing one)."""
    import time

    for path in folder.glob(".seg.npy.*.tmp"):
        try:
            if time.time() - path.stat().st_mtime > ABANDONED_S:
                path.unlink()
        except OSError:
            pass


def _remove(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
