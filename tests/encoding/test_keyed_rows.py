"""Keyed rows: what is added is found (in memory, and from files by a later store), what is not is not, keys that
share a first half are told apart, segments stay few, and damaged, vanished or unwritable files cost only work."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from auditor.encoding import keyed_rows
from auditor.encoding.keyed_rows import KeyedRows


def random_rows(n: int, width: int, seed: int):
    rng = np.random.default_rng(seed)
    key1 = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2)
    key2 = rng.integers(0, 2**63, n, dtype=np.uint64)
    return key1, key2, rng.integers(0, 2**63, (n, width), dtype=np.uint64)


def segment_files(folder) -> list:
    return sorted(folder.glob("seg-*.npy"))


@pytest.mark.parametrize("in_files", [False, True])
def test_rows_added_are_found_with_their_values_and_others_are_not(tmp_path, in_files):
    store = KeyedRows(tmp_path if in_files else None, 3)
    key1, key2, values = random_rows(500, 3, seed=0)
    store.add(key1[:300], key2[:300], values[:300])
    store.add(key1[300:400], key2[300:400], values[300:400])
    store.flush()
    found, got = store.get(key1, key2)
    assert found[:400].all() and not found[400:].any()
    np.testing.assert_array_equal(got[:400], values[:400])
    assert not got[400:].any()
    # the same first half, another second half: another key
    found, _ = store.get(key1[:5], key2[:5] + np.uint64(1))
    assert not found.any()


def test_keys_sharing_their_first_half_are_told_apart(tmp_path):
    key1 = np.repeat(np.array([7, 2**63 + 5], dtype=np.uint64), 20)
    key2 = np.arange(40, dtype=np.uint64)
    values = np.arange(40, dtype=np.uint64)[:, None] * np.uint64(3)
    store = KeyedRows(tmp_path, 1)
    order = np.random.default_rng(1).permutation(40)
    store.add(key1[order], key2[order], values[order])
    store.flush()
    found, got = KeyedRows(tmp_path, 1).get(key1, key2)
    assert found.all()
    np.testing.assert_array_equal(got, values)


def test_a_later_store_reads_the_files_and_many_flushes_leave_few_segments(tmp_path):
    key1, key2, values = random_rows(4_000, 2, seed=2)
    for start in range(0, 4_000, 100):  # 40 runs, each adding 100 rows
        store = KeyedRows(tmp_path, 2)
        store.add(key1[start:start + 100], key2[start:start + 100], values[start:start + 100])
        store.flush()
    assert len(segment_files(tmp_path)) <= 6  # sizes halve from the largest: log2(40) + 1
    found, got = KeyedRows(tmp_path, 2).get(key1, key2)
    assert found.all()
    np.testing.assert_array_equal(got, values)


def test_rows_wait_in_memory_until_enough_of_them_are_added(tmp_path, monkeypatch):
    monkeypatch.setattr(keyed_rows, "FLUSH_ROWS", 250)
    key1, key2, values = random_rows(600, 1, seed=3)
    store = KeyedRows(tmp_path, 1)
    store.add(key1[:200], key2[:200], values[:200])
    assert not segment_files(tmp_path)
    store.add(key1[200:300], key2[200:300], values[200:300])
    assert len(segment_files(tmp_path)) == 1 and not store._fresh
    many = KeyedRows(None, 1)  # in memory, rows added a few at a time stay in a few segments
    for start in range(0, 600, 10):
        many.add(key1[start:start + 10], key2[start:start + 10], values[start:start + 10])
    assert len(many._fresh) <= 7
    found, got = many.get(key1, key2)
    assert found.all()
    np.testing.assert_array_equal(got, values)


def test_a_key_held_twice_is_written_once(tmp_path):
    key1, key2, values = random_rows(100, 1, seed=4)
    for _ in range(2):  # two audits that computed the same rows
        store = KeyedRows(tmp_path, 1)
        store.add(key1, key2, values)
        store.flush()
    files = segment_files(tmp_path)
    assert len(files) == 1 and np.load(files[0]).shape == (3, 100)
    found, got = KeyedRows(tmp_path, 1).get(key1, key2)
    assert found.all()
    np.testing.assert_array_equal(got, values)


def test_damaged_foreign_and_vanished_segments_are_skipped(tmp_path):
    key1, key2, values = random_rows(50, 1, seed=5)
    store = KeyedRows(tmp_path, 1)
    store.add(key1, key2, values)
    store.flush()
    good = segment_files(tmp_path)[0]
    (tmp_path / "seg-truncated.npy").write_bytes(good.read_bytes()[:200])
    np.save(tmp_path / "seg-width.npy", np.zeros((5, 10), np.uint64))
    np.save(tmp_path / "seg-unsorted.npy", np.array([[3, 1], [0, 0], [0, 0]], np.uint64))
    np.save(tmp_path / "seg-float.npy", np.zeros((3, 4), np.float64))
    (tmp_path / "seg-text.npy").write_text("not an array")
    found, got = KeyedRows(tmp_path, 1).get(key1, key2)
    assert found.all()
    np.testing.assert_array_equal(got, values)
    listed = KeyedRows(tmp_path, 1)
    listed._segments()  # read, then merged away by another audit: its mapped pages stay readable
    os.remove(good)
    assert listed.get(key1, key2)[0].all()
    assert not KeyedRows(tmp_path, 1).get(key1, key2)[0].any()  # a later store recomputes them


def test_a_folder_that_cannot_be_written_keeps_the_rows_in_memory(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("x")
    store = KeyedRows(blocked / "below", 1)  # a folder below a file can never be made
    key1, key2, values = random_rows(20, 1, seed=6)
    store.add(key1, key2, values)
    store.flush()
    found, got = store.get(key1, key2)
    assert found.all()
    np.testing.assert_array_equal(got, values)


def test_a_temporary_file_left_by_a_killed_run_is_removed_once_old(tmp_path):
    old, new = tmp_path / ".seg.npy.aaaa.tmp", tmp_path / ".seg.npy.bbbb.tmp"
    for path in (old, new):
        path.write_bytes(b"half a segment")
    hours_ago = time.time() - 2 * keyed_rows.ABANDONED_S
    os.utime(old, (hours_ago, hours_ago))
    KeyedRows(tmp_path, 1).get(np.zeros(1, np.uint64), np.zeros(1, np.uint64))
    assert not old.exists() and new.exists()


def test_a_merge_over_many_key_ranges_keeps_every_row(tmp_path, monkeypatch):
    monkeypatch.setattr(keyed_rows, "MERGE_RANGE_ROWS", 64)  # 2 000 rows merged 64 at a time: 32 ranges
    key1, key2, values = random_rows(2_000, 1, seed=7)
    for part in (slice(0, 1_000), slice(1_000, 2_000)):
        store = KeyedRows(tmp_path, 1)
        store.add(key1[part], key2[part], values[part])
        store.flush()
    files = segment_files(tmp_path)
    assert len(files) == 1
    table = np.load(files[0])
    assert table.shape == (3, 2_000) and np.all(np.diff(table[0].astype(np.float64)) >= 0)
    found, got = KeyedRows(tmp_path, 1).get(key1, key2)
    assert found.all()
    np.testing.assert_array_equal(got, values)


def test_a_full_disk_keeps_the_rows_in_memory_and_leaves_no_file(tmp_path, monkeypatch):
    import errno

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space, raising=False)
    store = KeyedRows(tmp_path, 1)
    key1, key2, values = random_rows(30, 1, seed=8)
    store.add(key1, key2, values)
    store.flush()
    assert not list(tmp_path.iterdir())  # neither a segment nor its temporary file
    found, got = store.get(key1, key2)
    assert found.all()
    np.testing.assert_array_equal(got, values)
