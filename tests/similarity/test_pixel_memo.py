"""Pixel evidence remembered across audits: the same values as computing them, nothing computed twice, a damaged
entry recomputed, and a decision with the memo identical to one without."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from auditor.encoding.cache import Cache
from auditor.encoding.keyed_rows import KeyedRows
from auditor.similarity import evidence as ev
from auditor.similarity.engine import decide
from auditor.similarity.pixel_memo import CODE_WORDS, PixelMemo, digests, pair_keys


def thumbnails(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 6, 6), dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(s).resize((32, 32), Image.Resampling.BICUBIC)) for s in small])


def rows_held(rows: KeyedRows) -> int:
    return sum(len(segment) for segment in rows._segments() + rows._fresh)


def dict_memo() -> tuple[PixelMemo, KeyedRows]:
    """A memo whose stores are in memory (as with --no-cache), and its pairs' store."""
    pairs = KeyedRows(None, 1)
    return PixelMemo(pairs, KeyedRows(None, CODE_WORDS)), pairs


def test_correlations_equal_the_direct_computation_and_are_computed_once():
    thumbs = thumbnails(12)
    a, b = thumbs[:6], thumbs[[1, 0, 3, 2, 5, 4]]
    extra = np.array([-1, 2, -1, 5, -1, -1])
    every = np.array([True, False, False, False, True, False])
    direct = ev._best_correlation(a, b, extra, every)
    memo, store = dict_memo()
    first = memo.correlations(a, b, extra, every, ev._best_correlation)
    assert memo.computed == 6 and rows_held(store) == 6
    second = memo.correlations(a, b, extra, every, ev._best_correlation)
    assert memo.computed == 6 and memo.reused == 6
    for got in (first, second):
        np.testing.assert_array_equal(got[0], direct[0])
        np.testing.assert_array_equal(got[1], direct[1])


class CountingReads(np.ndarray):
    """A thumbnail table that counts how often it is indexed."""
    reads = 0

    def __getitem__(self, index):
        CountingReads.reads += 1
        return super().__getitem__(index)


def test_pairs_the_memo_knows_read_no_thumbnail_and_the_others_read_only_theirs():
    """pair_correlation with a memo gathers the thumbnails of the pairs the memo lacks, not of every pair: a warm
    decision at 10⁶ images copied 28 GB of thumbnails to compute nothing."""
    thumbs = thumbnails(30).view(CountingReads)
    rows_a, rows_b = np.arange(0, 20), np.arange(10, 30)
    memo, _ = dict_memo()
    first = ev.pair_correlation(thumbs, rows_a[:12], thumbs, rows_b[:12], -1, memo=memo)
    CountingReads.reads = 0
    again = ev.pair_correlation(thumbs, rows_a[:12], thumbs, rows_b[:12], -1, memo=memo)
    assert CountingReads.reads == 0 and memo.computed == 12 and memo.reused == 12
    assert np.array_equal(again[0], first[0]) and np.array_equal(again[1], first[1])
    more = ev.pair_correlation(thumbs, rows_a, thumbs, rows_b, -1, memo=memo)  # 12 known, 8 new
    assert memo.computed == 20 and CountingReads.reads > 0
    direct = ev.pair_correlation(np.asarray(thumbs), rows_a, np.asarray(thumbs), rows_b, -1)
    assert np.array_equal(more[0], direct[0]) and np.array_equal(more[1], direct[1])


def test_the_key_names_the_whole_question():
    thumbs = thumbnails(4)
    memo, store = dict_memo()
    memo.correlations(thumbs[:1], thumbs[1:2], np.array([-1]), np.array([False]), ev._best_correlation)
    memo.correlations(thumbs[:1], thumbs[1:2], np.array([3]), np.array([False]), ev._best_correlation)
    memo.correlations(thumbs[:1], thumbs[1:2], np.array([-1]), np.array([True]), ev._best_correlation)
    memo.correlations(thumbs[1:2], thumbs[:1], np.array([-1]), np.array([False]), ev._best_correlation)
    assert rows_held(store) == 4 and memo.reused == 0


def test_a_damaged_entry_is_recomputed():
    thumbs = thumbnails(4)
    memo, store = dict_memo()
    memo.correlations(thumbs[:2], thumbs[2:], np.array([-1, -1]), np.array([False, False]), ev._best_correlation)
    store._fresh[0].values[0, 0] = np.uint64(9) << np.uint64(32)  # a variant that does not exist
    got = memo.correlations(thumbs[:2], thumbs[2:], np.array([-1, -1]), np.array([False, False]), ev._best_correlation)
    assert memo.computed == 3
    np.testing.assert_array_equal(got[0], ev._best_correlation(thumbs[:2], thumbs[2:], np.array([-1, -1]), False)[0])


def test_pair_keys_name_each_part_of_the_question():
    d = digests(thumbnails(3))
    base = pair_keys(d[[0]], d[[1]], np.array([-1]), np.array([False]))
    others = [pair_keys(d[[1]], d[[0]], np.array([-1]), np.array([False])),  # the order of the pair
              pair_keys(d[[0]], d[[2]], np.array([-1]), np.array([False])),
              pair_keys(d[[0]], d[[1]], np.array([0]), np.array([False])),
              pair_keys(d[[0]], d[[1]], np.array([-1]), np.array([True]))]
    for key in others:
        assert key[0][0] != base[0][0] and key[1][0] != base[1][0]
    again = pair_keys(d[[0]], d[[1]], np.array([-1]), np.array([False]))
    assert again[0][0] == base[0][0] and again[1][0] == base[1][0]


def test_dihedral_codes_equal_the_direct_computation():
    thumbs = thumbnails(9)
    memo, _store = dict_memo()
    memo.dihedral_codes(thumbs[:4], ev.dihedral_codes)
    phash, dhash = memo.dihedral_codes(thumbs, ev.dihedral_codes)  # 4 reused, 5 computed
    assert memo.reused == 4 and memo.computed == 9
    direct = ev.dihedral_codes(thumbs)
    np.testing.assert_array_equal(phash, direct[0])
    np.testing.assert_array_equal(dhash, direct[1])


@pytest.mark.slow  # seconds: run by `make test`, not the edit-test loop
def test_a_decision_with_the_cache_memo_is_the_same_and_the_second_computes_nothing(tmp_path):
    rng = np.random.default_rng(3)
    thumbs = thumbnails(40, seed=1)
    thumbs[39] = np.clip(thumbs[3].astype(int) + 3, 0, 255)  # a brightened copy of node 3
    copies = np.stack([np.clip(thumbs[i].astype(int) + rng.integers(-4, 5, (32, 32)), 0, 255) for i in range(0, 20, 2)])
    arguments = dict(unit=None, thumbs=thumbs, reference=None, held_out=None, copy_unit=None,
                     copy_thumbs=copies.astype(np.uint8), copy_source=np.arange(0, 20, 2), copy_kind=["jitter"] * 10,
                     max_phash=6, max_dhash=10)
    plain = decide(**arguments)
    cache = Cache(tmp_path)
    first_memo = cache.pixel_memo()
    first = decide(**arguments, memo=first_memo)
    cache.close()
    again = Cache(tmp_path)  # a later audit, another process
    second_memo = again.pixel_memo()
    second = decide(**arguments, memo=second_memo)
    assert first_memo.computed > 0 and second_memo.computed == 0 and second_memo.reused == first_memo.computed
    for decision in (first, second):
        np.testing.assert_array_equal(decision.pairs.correlation, plain.pairs.correlation)
        np.testing.assert_array_equal(decision.accepted, plain.accepted)
        assert decision.rule == plain.rule and decision.groups == plain.groups
    assert [3, 39] in plain.groups


def test_a_key_is_the_thumbnails_content_not_their_position():
    thumbs = thumbnails(5)
    doubled = np.concatenate([thumbs, thumbs[::-1]])  # every thumbnail twice, at two positions
    d = digests(doubled)
    np.testing.assert_array_equal(d[:5], d[5:][::-1])
    assert len({bytes(row) for row in d[:5]}) == 5
    np.testing.assert_array_equal(digests(doubled, np.array([7, 1, 7])), d[[7, 1, 7]])
    memo, store = dict_memo()
    memo.correlations(thumbs[:2], thumbs[2:4], np.array([-1, -1]), np.array([False, False]), ev._best_correlation)
    # The same pairs asked through other positions, with the caller's digests: found, nothing computed.
    got = memo.correlations(doubled[[9, 8]], doubled[[7, 6]], np.array([-1, -1]), np.array([False, False]),
                            ev._best_correlation, d[[9, 8]], d[[7, 6]])
    assert memo.computed == 2 and memo.reused == 2 and rows_held(store) == 2
    np.testing.assert_array_equal(got[0], ev._best_correlation(thumbs[:2], thumbs[2:4], np.array([-1, -1]), False)[0])


def test_pair_correlation_with_a_memo_equals_the_direct_computation():
    thumbs = thumbnails(30, seed=4)
    rows_a = np.array([0, 0, 3, 7, 0, 12, 29, 3])
    rows_b = np.array([1, 2, 4, 8, 9, 13, 28, 5])
    extra = np.array([-1, 2, -1, 5, -1, -1, 7, 0])
    direct = ev.pair_correlation(thumbs, rows_a, thumbs, rows_b, extra, every_variant=rows_a == 0)
    memo, _store = dict_memo()
    for _ in range(2):  # computed, then found
        got = ev.pair_correlation(thumbs, rows_a, thumbs, rows_b, extra, every_variant=rows_a == 0, memo=memo)
        np.testing.assert_array_equal(got[0], direct[0])
        np.testing.assert_array_equal(got[1], direct[1])
    assert memo.computed == 8 and memo.reused == 8


def test_digest_table_holds_each_named_thumbnails_digest_by_row_hashing_each_once(monkeypatch):
    from auditor.similarity import pixel_memo

    thumbs = thumbnails(9, seed=2)
    memo, _store = dict_memo()
    hashed = []
    real = pixel_memo.digests
    monkeypatch.setattr(pixel_memo, "digests", lambda t, rows: hashed.extend(rows.tolist()) or real(t, rows))
    rows = np.array([4, 1, 4, 7, 1])
    table = memo.digest_table(thumbs, rows)
    assert table.shape == (9, 16)
    np.testing.assert_array_equal(table[rows], real(thumbs, rows))
    assert not table[[0, 2, 3, 5, 6, 8]].any()  # rows nobody named are not hashed
    memo.digest_table(thumbs, np.array([1, 2, 7]))
    assert sorted(hashed) == [1, 2, 4, 7]  # 1 and 7 were known
    memo.digest_table(thumbs.copy(), np.array([1]))  # another table: its own digests
    assert sorted(hashed) == [1, 1, 2, 4, 7]


def test_the_cache_keeps_pixel_evidence_in_files_that_a_later_cache_reads(tmp_path):
    thumbs = thumbnails(6, seed=5)
    cache = Cache(tmp_path)
    memo = cache.pixel_memo()
    direct = memo.correlations(thumbs[:3], thumbs[3:], np.array([-1, 2, -1]), np.array([False, False, True]),
                               ev._best_correlation)
    memo.dihedral_codes(thumbs, ev.dihedral_codes)
    memo.flush()
    assert len(list((tmp_path / "pixel-evidence").glob("*/seg-*.npy"))) == 2
    later = Cache(tmp_path).pixel_memo()
    got = later.correlations(thumbs[:3], thumbs[3:], np.array([-1, 2, -1]), np.array([False, False, True]),
                             ev._best_correlation)
    codes = later.dihedral_codes(thumbs, ev.dihedral_codes)
    assert later.computed == 0 and later.reused == 9
    np.testing.assert_array_equal(got[0], direct[0])
    np.testing.assert_array_equal(got[1], direct[1])
    np.testing.assert_array_equal(codes[0], ev.dihedral_codes(thumbs)[0])


def test_an_older_caches_pixel_evidence_table_is_dropped(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "cache.sqlite3")
    db.execute("CREATE TABLE pixel_evidence (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
    db.execute("INSERT INTO pixel_evidence VALUES (x'00', x'01')")
    db.commit()
    db.close()
    Cache(tmp_path).close()
    tables = sqlite3.connect(tmp_path / "cache.sqlite3").execute("SELECT name FROM sqlite_master").fetchall()
    assert ("pixel_evidence",) not in tables and ("scans",) in tables
