"""The 32×32 grey thumbnails of a run's contents (pHash's input, and the pixel tier's), in one uint8 array.

A scan carries its thumbnail as base64 text, which is how the cache stores it. Held that way by a million scans
they cost 1.7 GB (measured with the bench's memory trace), and the duplicate decision then decoded them into an
array of its own (1 GB more). Here they cost 1 KB each, and the decision reads this array itself when its
contents are the array's rows in order (an audit's are)."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from auditor.encoding.imaging import ImageScan

SIDE = 32


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
                   order: Iterable[str | None] = ()) -> "Thumbnails":
        """The thumbnails of `scans` (after those already `into` this table), moved out of the scans: each scan's
        text is dropped as soon as it is copied, so both forms are never held whole at once. Rows follow `order`
        (the records' contents, first seen first: the duplicate graph's nodes), then the other scans."""
        from auditor.similarity.pixels import decode_grey32

        into = into or cls.empty()
        ordered = dict.fromkeys(sha for sha in order if sha is not None and sha in scans)
        ordered.update(dict.fromkeys(scans))
        carrying = [sha for sha in ordered if scans[sha].grey32 and sha not in into]
        array = np.empty((len(into) + len(carrying), SIDE, SIDE), np.uint8)
        array[: len(into)] = into.array
        kept = list(into.shas)
        for sha in carrying:
            scan = scans[sha]
            thumb = decode_grey32(scan.grey32)
            scan.grey32 = None
            if thumb is not None:  # a damaged cache row: no thumbnail, as before
                array[len(kept)] = thumb
                kept.append(sha)
        return cls(kept, array[: len(kept)])

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
