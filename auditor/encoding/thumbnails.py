"""The 32×32 grey thumbnails of a run's contents (pHash's input, and the pixel tier's), in one uint8 array.

A scan carries its thumbnail as base64 text, which is how the cache stores it. Held that way by a million scans
they cost 1.7 GB (measured with the bench's memory trace), and the duplicate decision then decoded them into an
array of its own (1 GB more). Here they cost 1 KB each, and the decision reads this array itself when its
contents are the array's rows in order (an audit's are).

A table of more than `IN_MEMORY_ROWS` thumbnails is a memory map of an unlinked temporary file in the cache folder
(or the system's temporary folder): its pages are the kernel's to write back and drop under memory pressure, so a
million thumbnails no longer hold 1 GB of anonymous memory through the duplicate decision. The file's space is
reserved before anything is written (a full disk would otherwise kill the process on a write to the map), and
where it cannot be, the table stays in memory.

An encode fills its table while the scans arrive (`Filling`): each scan's text is copied into its content's row
and dropped at once, as the cache's scans are read and as new ones are decoded, so no stage holds every thumbnail as
text (≈ 1.4 KB a scan with the object around it: 1.4 GB of anonymous memory at 10⁶ images, held through the whole
encode before)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from auditor.encoding.imaging import ImageScan

SIDE = 32
IN_MEMORY_ROWS = 65_536  # 64 MiB of thumbnails; larger tables are memory-mapped files


def allocate(rows: int, folder: Path | None = None) -> np.ndarray:
    """An uninitialised uint8 (rows, 32, 32) table: in memory up to `IN_MEMORY_ROWS`, above that a shared memory map
    of an unlinked temporary file in `folder` (the system's temporary folder when None), its space reserved first.
    Falls back to memory when the file cannot be made or its space reserved."""
    shape = (rows, SIDE, SIDE)
    if rows <= IN_MEMORY_ROWS:
        return np.empty(shape, np.uint8)
    try:
        with tempfile.TemporaryFile(prefix="auditor-thumbnails-", dir=folder) as handle:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(handle.fileno(), 0, rows * SIDE * SIDE)
            else:  # pragma: no cover - not POSIX: the file is sized without a reservation
                handle.truncate(rows * SIDE * SIDE)
            # the map keeps its own descriptor: the file lives (unnamed) as long as the array does
            return np.memmap(handle, dtype=np.uint8, mode="r+", shape=shape)
    except (OSError, ValueError):
        return np.empty(shape, np.uint8)


class Thumbnails:
    def __init__(self, shas: list[str], array: np.ndarray):
        if array.shape != (len(shas), SIDE, SIDE) or array.dtype != np.uint8:
            raise ValueError(f"thumbnails must be uint8 ({len(shas)}, {SIDE}, {SIDE}); got {array.dtype} {array.shape}")
        self.shas = shas
        self.array = array
        self._row = {sha: row for row, sha in enumerate(shas)}

    @classmethod
    def empty(cls) -> "Thumbnails":
        return cls([], np.zeros((0, SIDE, SIDE), np.uint8))

    @classmethod
    def taken_from(cls, scans: dict[str, ImageScan], into: "Thumbnails | None" = None,
                   order: Iterable[str | None] = (), folder: Path | None = None) -> "Thumbnails":
        """The thumbnails of `scans` (after those already `into` this table), moved out of the scans: each scan's
        text is dropped as soon as it is copied, so both forms are never held whole at once. Rows follow `order`
        (the records' contents, first seen first: the duplicate graph's nodes), then the other scans. A large
        table is a memory-mapped file in `folder` (`allocate`)."""
        into = into or cls.empty()
        ordered = dict.fromkeys(sha for sha in order if sha is not None and sha in scans)
        ordered.update(dict.fromkeys(scans))
        carrying = [sha for sha in ordered if scans[sha].grey32 and sha not in into]
        if not carrying and len(into):
            return into  # nothing to add (a re-planned split's audit reuses its audit's table): no copy
        filling = Filling(list(into.shas) + carrying, folder)
        filling.array[: len(into)] = into.array
        filling.filled[: len(into)] = True
        filling.take(scans[sha] for sha in carrying)
        return filling.table()

    def __contains__(self, sha: object) -> bool:
        return sha in self._row

    def __len__(self) -> int:
        return len(self.shas)

    def of(self, shas: Iterable[str]) -> np.ndarray:
        """(n, 32, 32) thumbnails of these contents (each must have one): the array itself, not a copy, when they
        are its rows in order."""
        shas = list(shas)
        if shas == self.shas[: len(shas)]:
            return self.array[: len(shas)]
        rows = np.fromiter((self._row[sha] for sha in shas), dtype=np.int64, count=len(shas))
        return self.array[rows]


class Filling:
    """A table filled while the scans arrive: `take` copies each scan's thumbnail into the row of its content (rows
    in the order of `shas`, the records' contents first seen first) and drops the scan's text; `table` is then the
    Thumbnails of every content that had one, in that order."""

    def __init__(self, shas: list[str], folder: Path | None = None):
        self.shas = shas
        self._row = {sha: row for row, sha in enumerate(shas)}
        self.array = allocate(len(shas), folder)
        self.filled = np.zeros(len(shas), dtype=bool)

    def take(self, scans: Iterable[ImageScan]) -> None:
        from auditor.similarity.pixels import decode_grey32

        for scan in scans:
            row = self._row.get(scan.sha256)
            if row is None or not scan.grey32:
                continue  # a content this table was not made for keeps its text (Thumbnails.taken_from moves it)
            thumb = decode_grey32(scan.grey32)
            scan.grey32 = None
            if thumb is not None:  # a damaged cache row: no thumbnail, as before
                self.array[row] = thumb
                self.filled[row] = True

    def table(self) -> Thumbnails:
        """The filled rows, in order. Contents without a thumbnail (undecodable files) leave gaps, closed in place:
        each kept row moves to a lower or equal row, a block at a time, read before it is written."""
        keep = np.flatnonzero(self.filled)
        if len(keep) == len(self.shas):
            return Thumbnails(self.shas, self.array)
        for start in range(0, len(keep), IN_MEMORY_ROWS):
            stop = min(start + IN_MEMORY_ROWS, len(keep))
            self.array[start:stop] = self.array[keep[start:stop]]
        return Thumbnails([self.shas[row] for row in keep], self.array[: len(keep)])
