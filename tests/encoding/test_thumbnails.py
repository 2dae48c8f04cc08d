"""The thumbnails leave the scans for one uint8 table when the encode phase ends: 1 KB an image instead of 1.7 KB of
base64 text, and the duplicate decision reads the table's own array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from auditor.encoding.cache import Cache
from auditor.encoding.encode import Encoded, encode_dataset
from auditor.encoding.imaging import ImageScan, ScanLimits
from auditor.encoding.thumbnails import Thumbnails
from auditor.index.dataset import DatasetIndex, ImageRecord
from auditor.similarity.pixels import encode_grey32


def _scan(sha: str, thumb: np.ndarray | None) -> ImageScan:
    return ImageScan(sha256=sha, file_size=1, grey32=None if thumb is None else encode_grey32(thumb))


@pytest.fixture
def thumbs():
    return np.random.default_rng(0).integers(0, 256, (4, 32, 32), dtype=np.uint8)


def test_thumbnails_move_out_of_the_scans_in_the_records_order(thumbs):
    scans = {"a": _scan("a", thumbs[0]), "b": _scan("b", thumbs[1]), "c": _scan("c", thumbs[2]), "d": _scan("d", None)}
    scans["e"] = ImageScan(sha256="e", file_size=1, grey32=encode_grey32(thumbs[3])[:40])  # a damaged cache row
    table = Thumbnails.taken_from(scans, order=["c", None, "a", "c", "d"])
    assert table.shas == ["c", "a", "b"]  # the records' order first, then the other scans
    assert np.array_equal(table.array, thumbs[[2, 0, 1]])
    assert all(scan.grey32 is None for scan in scans.values())  # the text is gone
    assert "d" not in table and "e" not in table and len(table) == 3


def test_the_decision_reads_the_tables_own_array_when_it_can(thumbs):
    table = Thumbnails(["a", "b", "c"], thumbs[:3])
    first_two = table.of(["a", "b"])
    assert np.shares_memory(first_two, table.array) and np.array_equal(first_two, thumbs[:2])
    gathered = table.of(["c", "a"])
    assert not np.shares_memory(gathered, table.array) and np.array_equal(gathered, thumbs[[2, 0]])
    with pytest.raises(KeyError):
        table.of(["z"])
    with pytest.raises(ValueError, match="uint8"):
        Thumbnails(["a"], thumbs[:1].astype(np.float32))


def test_a_given_table_is_kept_and_the_scans_text_added_to_it(thumbs):
    given = Thumbnails(["a"], thumbs[:1])
    encoded = Encoded(record_sha=["a", "b"], read_problems={}, embeddings={}, thumbnails=given,
                      scans={"a": _scan("a", None), "b": _scan("b", thumbs[1])})
    assert encoded.thumbnails.shas == ["a", "b"] and np.array_equal(encoded.thumbnails.array, thumbs[:2])
    again = Encoded(record_sha=["b", "a"], read_problems={}, embeddings={}, thumbnails=encoded.thumbnails,
                    scans=encoded.scans)  # every scan's text already taken: the given table itself, not a copy
    assert again.thumbnails is encoded.thumbnails


def test_an_encode_keeps_the_text_in_the_cache_so_the_next_run_has_the_thumbnails(tmp_path):
    root = tmp_path / "data"
    (root / "cat").mkdir(parents=True)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "cat" / f"{i}.png")
        paths.append(f"cat/{i}.png")
    index = DatasetIndex(root=root, layout="classes",
                         records=[ImageRecord(p, root / p, split="train", label="cat") for p in paths])
    runs = []
    for _ in range(2):  # scanned, then from the cache
        cache = Cache(tmp_path / "cache")
        try:
            encoded = encode_dataset(index, cache, None, ScanLimits(), 2**20, workers=2)
        finally:
            cache.close()
        assert all(scan.grey32 is None for scan in encoded.scans.values())
        assert encoded.thumbnails.shas == encoded.record_sha
        runs.append(encoded.thumbnails.array)
    assert runs[0].shape == (3, 32, 32) and np.array_equal(runs[0], runs[1])


def test_a_large_table_is_a_memory_mapped_file_that_leaves_nothing_behind(tmp_path, monkeypatch, thumbs):
    from auditor.encoding import thumbnails as module

    monkeypatch.setattr(module, "IN_MEMORY_ROWS", 2)
    scans = {sha: _scan(sha, thumb) for sha, thumb in zip("abcd", thumbs)}
    table = Thumbnails.taken_from(scans, order=list("dcba"), folder=tmp_path)
    assert isinstance(table.array, np.memmap) and np.array_equal(table.array, thumbs[::-1])
    assert list(tmp_path.iterdir()) == []  # unlinked at once: the map holds the only reference
    if Path("/proc/self/maps").exists():  # file-backed (a shared map of the deleted file), not anonymous memory
        mapped = [line for line in Path("/proc/self/maps").read_text().splitlines() if str(tmp_path) in line]
        assert mapped and all(" rw-s " in line and line.endswith("(deleted)") for line in mapped)
    assert np.array_equal(table.of(["b", "d"]), thumbs[[1, 3]])
    small = Thumbnails.taken_from({"a": _scan("a", thumbs[0])}, folder=tmp_path)
    assert not isinstance(small.array, np.memmap)


def test_a_table_whose_file_cannot_be_made_stays_in_memory(tmp_path, monkeypatch, thumbs):
    from auditor.encoding import thumbnails as module

    monkeypatch.setattr(module, "IN_MEMORY_ROWS", 2)
    scans = {sha: _scan(sha, thumb) for sha, thumb in zip("abcd", thumbs)}
    table = Thumbnails.taken_from(scans, order=list("abcd"), folder=tmp_path / "missing")
    assert not isinstance(table.array, np.memmap) and np.array_equal(table.array, thumbs)

    def full_disk(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module.os, "posix_fallocate", full_disk)
    assert not isinstance(module.allocate(3, tmp_path), np.memmap)
