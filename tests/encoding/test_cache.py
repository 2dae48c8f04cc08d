"""Unit tests for auditor/cache.py: the SQLite cache of scans and embeddings."""

from __future__ import annotations

import io
import os
import sqlite3

import numpy as np
import pytest
from PIL import Image

import auditor.encoding.cache as cache_module
from auditor.encoding.cache import Cache
from auditor.errors import AuditorError
from auditor.encoding.imaging import ScanLimits, scan_bytes


def real_scan(seed: int, size=(64, 48)):
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, "PNG")
    scan, _ = scan_bytes(buffer.getvalue(), ScanLimits())
    return scan


@pytest.fixture
def cache(tmp_path):
    c = Cache(tmp_path / "cache")
    yield c
    c.close()


def test_scans_round_trip(cache):
    good, tiny = real_scan(1), real_scan(2, size=(10, 10))
    assert tiny.problems and good.grey32
    broken, _ = scan_bytes(b"not an image", ScanLimits())
    cache.put_scans([good, tiny, broken])
    found = cache.get_scans([good.sha256, tiny.sha256, broken.sha256, "f" * 64])
    assert found == {good.sha256: good, tiny.sha256: tiny, broken.sha256: broken}
    assert not found[broken.sha256].usable and found[tiny.sha256].usable


def test_scans_of_another_scan_version_are_missing(cache, monkeypatch):
    scan = real_scan(3)
    cache.put_scans([scan])
    monkeypatch.setattr(cache_module, "SCAN_VERSION", cache_module.SCAN_VERSION + 1)
    assert cache.get_scans([scan.sha256]) == {}


def test_embeddings_round_trip(cache):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 16)).astype(np.float32)
    cache.put_embeddings("model-a", ["s1", "s2", "s3"], vectors)
    found = cache.get_embeddings("model-a", ["s3", "s1", "absent"])
    assert set(found) == {"s1", "s3"}
    np.testing.assert_array_equal(found["s1"], vectors[0])
    np.testing.assert_array_equal(found["s3"], vectors[2])
    assert found["s1"].dtype == np.float32
    assert cache.count_embeddings("model-a") == 3


def test_float64_embeddings_are_stored_as_float32(cache):
    vectors = np.array([[0.1, 0.2, 0.3]], dtype=np.float64)
    cache.put_embeddings("m", ["s"], vectors)
    np.testing.assert_array_equal(cache.get_embeddings("m", ["s"])["s"], vectors[0].astype(np.float32))


def test_many_hashes_are_looked_up_in_chunks(cache):
    shas = [f"{i:064x}" for i in range(2000)]
    vectors = np.arange(2000 * 2, dtype=np.float32).reshape(2000, 2)
    cache.put_embeddings("m", shas, vectors)
    found = cache.get_embeddings("m", shas)
    assert len(found) == 2000
    np.testing.assert_array_equal(found[shas[1999]], vectors[1999])


def test_model_keys_do_not_mix(cache):
    cache.put_embeddings("resnet50|imagenet|v1|224|float32", ["s"], np.ones((1, 4), np.float32))
    cache.put_embeddings("resnet50|imagenet|v1|224|bfloat16", ["s"], np.full((1, 4), 2.0, np.float32))
    assert cache.get_embeddings("efficientnet-lite0|x|v1|224|float32", ["s"]) == {}
    np.testing.assert_array_equal(cache.get_embeddings("resnet50|imagenet|v1|224|float32", ["s"])["s"], np.ones(4))
    np.testing.assert_array_equal(cache.get_embeddings("resnet50|imagenet|v1|224|bfloat16", ["s"])["s"], np.full(4, 2.0))
    assert cache.count_embeddings("resnet50|imagenet|v1|224|float32") == 1


def test_second_instance_sees_committed_data(tmp_path):
    first = Cache(tmp_path / "c")
    scan = real_scan(4)
    first.put_scans([scan])
    first.put_embeddings("m", [scan.sha256], np.array([[1.0, 2.0]], np.float32))
    second = Cache(tmp_path / "c")  # while the first is still open
    try:
        assert second.get_scans([scan.sha256]) == {scan.sha256: scan}
        np.testing.assert_array_equal(second.get_embeddings("m", [scan.sha256])[scan.sha256], [1.0, 2.0])
    finally:
        second.close()
        first.close()
    third = Cache(tmp_path / "c")  # after both closed
    try:
        assert third.count_embeddings("m") == 1
    finally:
        third.close()


def test_damaged_embedding_row_is_treated_as_missing(tmp_path):
    c = Cache(tmp_path / "c")
    c.put_embeddings("m", ["good", "bad"], np.ones((2, 8), np.float32))
    c.close()
    with sqlite3.connect(tmp_path / "c" / "cache.sqlite3") as db:
        db.execute("UPDATE embeddings SET vector = ? WHERE sha256 = 'bad'", (np.ones(5, np.float32).tobytes(),))
    c = Cache(tmp_path / "c")
    try:
        assert set(c.get_embeddings("m", ["good", "bad"])) == {"good"}
        c.put_embeddings("m", ["bad"], np.full((1, 8), 3.0, np.float32))  # recomputed, replaces the damaged row
        np.testing.assert_array_equal(c.get_embeddings("m", ["bad"])["bad"], np.full(8, 3.0))
    finally:
        c.close()


def test_in_memory_cache(tmp_path):
    first, second = Cache(None), Cache(None)
    try:
        assert first.path is None
        scan = real_scan(5)
        first.put_scans([scan])
        first.put_embeddings("m", [scan.sha256], np.ones((1, 3), np.float32))
        assert first.get_scans([scan.sha256]) == {scan.sha256: scan}
        assert first.count_embeddings("m") == 1
        assert second.get_scans([scan.sha256]) == {}  # nothing shared, nothing on disk
        assert list(tmp_path.iterdir()) == []
    finally:
        first.close()
        second.close()


def test_cache_dir_that_is_a_file_raises_auditor_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(AuditorError, match="cannot open the cache") as raised:
        Cache(blocker / "sub")
    assert "--no-cache" in raised.value.tip


def test_cache_file_that_is_a_directory_raises_auditor_error(tmp_path):
    (tmp_path / "c" / "cache.sqlite3").mkdir(parents=True)
    with pytest.raises(AuditorError, match="cannot open the cache"):
        Cache(tmp_path / "c")


def test_unwritable_cache_dir_raises_auditor_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("this user (e.g. root) can write into a read-only folder")
        with pytest.raises(AuditorError, match="cannot open the cache"):
            Cache(locked / "cache")
    finally:
        locked.chmod(0o755)

