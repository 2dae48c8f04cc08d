"""Unit tests for the embedding store: round trip, bulk reads, atomic commits, missing rows, migration."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from auditor.encoding import embedding_store as es
from auditor.encoding.cache import Cache
from auditor.encoding.embedding_store import StoredEmbeddings, to_float32


def vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, dim)) * 3.0).astype(np.float32)


def shas(n: int, prefix: str = "s") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(n)]


def test_round_trip_keeps_direction_and_norm(tmp_path):
    cache = Cache(tmp_path)
    store = cache.embedding_store("model|a")
    raw = vectors(10)
    store.put(shas(10), raw)
    view = StoredEmbeddings(store)
    assert len(view) == 10 and "s00003" in view and "nope" not in view
    np.testing.assert_allclose(view["s00003"], raw[3], rtol=2e-3, atol=1e-3)
    unit = to_float32(store.unit_rows(shas(10)))
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-3)
    cosine = (raw / np.linalg.norm(raw, axis=1, keepdims=True)) @ (raw[0] / np.linalg.norm(raw[0]))
    np.testing.assert_allclose(unit @ unit[0], cosine, atol=2e-3)
    with pytest.raises(KeyError):
        view["nope"]


def test_a_new_process_finds_what_was_committed_and_nothing_else(tmp_path):
    first = Cache(tmp_path).embedding_store("model|a")
    first.put(shas(5), vectors(5))
    again = Cache(tmp_path).embedding_store("model|a")  # a fresh connection, as in the next run
    assert again.load(shas(7)) == 5
    assert set(again.shas()) == set(shas(5))
    np.testing.assert_array_equal(again.unit_rows(shas(5)), first.unit_rows(shas(5)))
    other = Cache(tmp_path).embedding_store("model|b")  # another backbone key never sees these rows
    assert other.load(shas(5)) == 0


def test_bulk_reads_are_one_slice_in_order_and_gathered_otherwise(tmp_path):
    store = Cache(tmp_path).embedding_store("m")
    for start in range(0, 12, 4):  # three batches: three chunks
        store.put(shas(12)[start:start + 4], vectors(12)[start:start + 4])
    whole = store.unit_rows(shas(12)[:4])
    assert isinstance(whole, np.memmap) or whole.base is not None  # a view into one chunk's memory map
    shuffled = [shas(12)[i] for i in (7, 0, 11, 3)]
    expected = np.stack([store.unit_rows([s])[0] for s in shuffled])
    np.testing.assert_array_equal(store.unit_rows(shuffled), expected)


def test_many_rows_from_many_chunks_are_compacted_once_in_the_order_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(es, "GATHER_IN_MEMORY_BYTES", 0)  # force the compaction path
    store = Cache(tmp_path).embedding_store("m")
    names = shas(40)
    for start in range(0, 40, 8):
        store.put(names[start:start + 8], vectors(40)[start:start + 8])
    order = names[::-1]
    before = np.stack([store.unit_rows([s])[0] for s in order])
    chunks_before = set(p.name for p in store.folder.glob("chunk-*.npy"))
    rows = store.unit_rows(order)
    np.testing.assert_array_equal(rows, before)
    chunk_files = set(p.name for p in store.folder.glob("chunk-*.npy"))
    assert len(chunk_files) == 1 and not chunk_files & chunks_before  # old chunks no row uses are gone
    # The next run reads one slice of the compacted chunk, with the same vectors and norms.
    again = Cache(tmp_path).embedding_store("m")
    again.load(order)
    np.testing.assert_array_equal(again.unit_rows(order), before)
    np.testing.assert_allclose(again.norms(order), store.norms(order))


def test_more_chunks_than_a_process_may_open_are_read_and_compacted(tmp_path):
    """A store written a batch at a time holds more chunk files than the descriptors a process may open (31 250 at 10⁶
    images): reading all its rows kept every chunk mapped, one descriptor each, and failed with EMFILE. Run in a child
    process whose descriptor limit is 100, with 400 chunks and at most 50 kept mapped."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import resource
        import numpy as np
        from auditor.encoding import embedding_store as es
        from auditor.encoding.cache import Cache

        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))
        es.GATHER_IN_MEMORY_BYTES = 0  # the compaction path, as at 10⁶ images
        es.MAX_OPEN_MAPS = 50  # the cap in the same relation to this limit as 256 to 20 000 or 1 024
        store = Cache({str(tmp_path)!r}).embedding_store("m")
        names = [f"s{{i:05d}}" for i in range(800)]
        vectors = np.random.default_rng(0).normal(size=(800, 8)).astype(np.float32)
        for start in range(0, 800, 2):
            store.put(names[start:start + 2], vectors[start:start + 2])
        gathered = np.stack([np.array(store.unit_rows([name])[0]) for name in names[::-1]])  # copies: a view keeps its map open
        assert len(store._maps) <= es.MAX_OPEN_MAPS
        rows = store.unit_rows(names[::-1])
        assert np.array_equal(rows, gathered) and len(store._maps) <= es.MAX_OPEN_MAPS
        print("ok", len(list(store.folder.glob("chunk-*.npy"))))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok", "1"]  # compacted into one chunk


def test_the_open_maps_are_the_ones_used_last():
    maps: dict = {}
    for key in "abcd":
        es.remember_map(maps, key, np.zeros(1), limit=3)
    assert list(maps) == ["b", "c", "d"]
    es.remember_map(maps, "b", maps["b"], limit=3)  # used again: the most recent
    es.remember_map(maps, "e", np.zeros(1), limit=3)
    assert list(maps) == ["d", "b", "e"]


def test_a_chunk_without_its_commit_is_ignored_and_cleaned_up(tmp_path, monkeypatch):
    store = Cache(tmp_path).embedding_store("m")
    store.put(shas(3), vectors(3))

    def crash(*_args, **_kwargs):
        raise KeyboardInterrupt  # killed between writing the chunk file and committing its rows

    monkeypatch.setattr(store, "_commit", crash)
    with pytest.raises(KeyboardInterrupt):
        store.put(shas(3, "t"), vectors(3, seed=1))
    monkeypatch.undo()
    files = list(store.folder.glob("chunk-*.npy"))
    assert len(files) == 2
    again = Cache(tmp_path).embedding_store("m")
    assert again.load(shas(3) + shas(3, "t")) == 3  # only the committed batch exists
    monkeypatch.setattr(es, "_STALE_S", -1)  # "a day old"
    again.remove_stale_files()
    assert len(list(store.folder.glob("chunk-*.npy"))) == 1


def test_rows_of_the_old_sqlite_table_are_migrated_lazily_and_left_in_place(tmp_path):
    cache = Cache(tmp_path)
    raw = vectors(4, dim=8)
    cache.put_embeddings("m", shas(4), raw)  # as an earlier version stored them
    store = Cache(tmp_path).embedding_store("m")
    assert store.load(shas(4)) == 4 and store.migrated == 4
    np.testing.assert_allclose(StoredEmbeddings(store)["s00002"], raw[2], rtol=2e-3, atol=1e-3)
    assert Cache(tmp_path).count_embeddings("m") == 4  # older versions still find their rows
    third = Cache(tmp_path).embedding_store("m")
    assert third.load(shas(4)) == 4 and third.migrated == 0  # migrated once


def test_a_vector_of_another_dimension_is_refused(tmp_path):
    store = Cache(tmp_path).embedding_store("m")
    store.put(shas(2), vectors(2, dim=8))
    with pytest.raises(ValueError, match="dimensions"):
        store.put(["x"], vectors(1, dim=9))


def test_no_cache_keeps_the_store_in_a_private_folder_removed_on_close():
    cache = Cache(None)
    store = cache.embedding_store("m")
    store.put(shas(2), vectors(2))
    folder = store.folder
    assert folder.exists() and len(StoredEmbeddings(store)) == 2
    cache.close()
    assert not folder.exists()


def test_to_float32_matches_numpy():
    x = np.random.default_rng(0).normal(size=(50, 24)).astype(np.float16)
    np.testing.assert_array_equal(to_float32(x), x.astype(np.float32))
    assert to_float32(x[:0]).shape == (0, 24)


def test_schema_is_plain_sqlite(tmp_path):
    Cache(tmp_path).embedding_store("m").put(shas(1), vectors(1))
    db = sqlite3.connect(tmp_path / "cache.sqlite3")
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"embedding_chunks", "embedding_rows", "embeddings", "scans"} <= tables
