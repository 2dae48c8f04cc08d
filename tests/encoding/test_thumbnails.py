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
from auditor.encoding.thumbnails import Filling, Thumbnails
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


def test_a_filling_table_takes_each_scans_text_as_it_comes_and_closes_its_gaps(tmp_path, monkeypatch, thumbs):
    from auditor.encoding import thumbnails as module

    monkeypatch.setattr(module, "IN_MEMORY_ROWS", 2)  # a memory-mapped table, gaps closed two rows at a time
    filling = Filling(["a", "b", "c", "d", "e"], tmp_path)
    first = [_scan("d", thumbs[3]), _scan("b", None)]  # out of order; b has no thumbnail (an undecodable file)
    filling.take(first)
    assert first[0].grey32 is None  # dropped as soon as it is copied
    stranger = _scan("z", thumbs[0])
    filling.take([_scan("a", thumbs[0]), stranger, _scan("c", thumbs[2])])
    assert stranger.grey32 is not None  # not this table's content: its text stays for Thumbnails.taken_from
    filling.take([ImageScan(sha256="e", file_size=1, grey32=encode_grey32(thumbs[1])[:40])])  # damaged: no row
    table = filling.table()
    assert table.shas == ["a", "c", "d"] and np.array_equal(table.array, thumbs[[0, 2, 3]])
    assert isinstance(table.array, np.memmap) and table.of(["c"]).tolist() == thumbs[[2]].tolist()
    whole = Filling(["x", "y"])
    whole.take([_scan("y", thumbs[1]), _scan("x", thumbs[0])])
    assert whole.table().array is whole.array and np.array_equal(whole.array, thumbs[:2])  # no gap: no copy


def test_the_cache_hands_each_chunk_of_scans_over_before_reading_the_next(tmp_path, monkeypatch, thumbs):
    from auditor.encoding import cache as module

    monkeypatch.setattr(module, "_chunks", lambda items, size: [items[i:i + 2] for i in range(0, len(items), 2)])
    cache = Cache(tmp_path / "cache")
    try:
        cache.put_scans([_scan(sha, thumb) for sha, thumb in zip("abcd", thumbs)])
        seen: list[list[str]] = []

        def each_chunk(scans):
            seen.append([scan.sha256 for scan in scans])
            for scan in scans:
                scan.grey32 = None

        scans = cache.get_scans(list("abcd"), each_chunk=each_chunk)
    finally:
        cache.close()
    assert sorted(sha for chunk in seen for sha in chunk) == list("abcd") and len(seen) == 2
    assert set(scans) == set("abcd") and all(scan.grey32 is None for scan in scans.values())


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


@pytest.mark.slow
def test_an_audit_whose_thumbnails_are_a_file_reports_what_one_in_memory_reports(tmp_path, monkeypatch):
    """The product path end to end (real photos, the real backbone, the CLI) with the memory-mapped table forced on
    a small dataset: with a cache and with --no-cache, every check's JSON is the in-memory audit's."""
    import shutil

    from auditor.encoding import thumbnails as module
    from tests.e2e.cli_helpers import run_cli

    photos = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "hymenoptera_data"
    if not photos.is_dir():
        pytest.skip(f"real photos not found at {photos}")
    data = tmp_path / "data"
    for split in ("train", "val"):
        for label in ("ants", "bees"):
            (data / split / label).mkdir(parents=True)
            for photo in sorted((photos / split / label).glob("*.jpg"))[:6]:
                shutil.copyfile(photo, data / split / label / photo.name)
    shutil.copyfile(photos / "train" / "ants" / sorted(p.name for p in (photos / "train" / "ants").glob("*.jpg"))[0],
                    data / "val" / "ants" / "leaked.jpg")
    common = ("--offline", "--backbone", "efficientnet-lite0", "--calibration-images", "5", "-q", "--format", "json",
              "--exit-zero")

    def untimed(value):
        if isinstance(value, dict):
            return {k: untimed(v) for k, v in value.items() if k != "seconds"}
        return [untimed(v) for v in value] if isinstance(value, list) else value

    def checks(*extra: str, out: str) -> list[dict]:
        result = run_cli("audit", data, *common, *extra, out=tmp_path / out)
        assert result.exit_code == 0, result.stderr
        return untimed(result.report["checks"])

    # A cache each (a shared one would serve the second audit's checks from the first's results), both cold; and
    # without a cache, whose embeddings come from another runtime (no LiteRT copy is kept): its own reference.
    in_memory = checks("--cache-dir", str(tmp_path / "cache-memory"), out="memory")
    in_memory_no_cache = checks("--no-cache", out="memory-no-cache")
    leakage = next(c for c in in_memory if c["id"] == "leakage")
    assert any("leaked.jpg" in path for f in leakage["findings"] for path in f["paths"])  # the decision saw it
    monkeypatch.setattr(module, "IN_MEMORY_ROWS", 4)
    maps = []
    allocate = module.allocate
    monkeypatch.setattr(module, "allocate", lambda rows, folder=None: maps.append(allocate(rows, folder)) or maps[-1])
    assert checks("--cache-dir", str(tmp_path / "cache-mapped"), out="mapped") == in_memory
    assert checks("--no-cache", out="mapped-no-cache") == in_memory_no_cache
    assert len(maps) >= 2 and all(isinstance(table, np.memmap) for table in maps)
