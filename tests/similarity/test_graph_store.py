"""The exact k-NN graph kept in the cache: read back, extended when the dataset grew, never used when it does not
fit the vectors."""

from __future__ import annotations

import numpy as np
import pytest

import auditor.similarity.neighbours as neighbour_search
from auditor.encoding.embedding_store import to_float32
from auditor.similarity import graph_store
from auditor.similarity.graph_store import GraphStore
from auditor.similarity.neighbours import normalise


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    x = normalise(np.random.default_rng(seed).normal(size=(n, 24))).astype(np.float16)
    x.flags.writeable = False
    return x


def _full(x: np.ndarray, k: int = 11):
    return neighbour_search._exact_search(to_float32(x), to_float32(x), k)


def _loaded_counting_searches(store: GraphStore, x: np.ndarray, monkeypatch):
    """The store's graph of 11 neighbours for x, and how many queries each exact search it ran had."""
    searched = []
    original = neighbour_search._exact_search
    monkeypatch.setattr(neighbour_search, "_exact_search", lambda a, q, k: searched.append(len(q)) or original(a, q, k))
    graph = store.load(x, 11)
    monkeypatch.setattr(neighbour_search, "_exact_search", original)
    return graph, searched


def test_a_kept_graph_is_read_back_and_a_grown_dataset_extends_it(tmp_path, monkeypatch):
    x = _vectors(200)
    shas = [f"{i:064x}" for i in range(200)]
    existing = GraphStore(tmp_path, "model-a", shas[:190])
    assert existing.load(x[:190], 11) is None  # nothing kept yet
    existing.save(x[:190], *_full(x[:190]))

    same = GraphStore(tmp_path, "model-a", shas[:190]).load(x[:190], 6)
    assert np.array_equal(same[1], _full(x[:190])[1][:, :6])

    order = [*range(5), *range(190, 200), *range(5, 190)]  # new contents first, as a merge audit lists them
    grown = GraphStore(tmp_path, "model-a", [shas[i] for i in order])
    (sims, ids), searched = _loaded_counting_searches(grown, x[order], monkeypatch)
    assert searched == [10, 190]  # the new rows against all, the kept rows against the new ones
    assert np.array_equal(ids, _full(x[order])[1]) and grown.extended_rows == 10
    assert len(list(grown.folder.glob("graph-*.npz"))) == 2  # the grown graph is kept too
    assert GraphStore(tmp_path, "model-b", shas[:190]).load(x[:190], 11) is None  # another model: its own folder


def test_a_kept_graph_that_does_not_fit_is_not_used(tmp_path):
    x = _vectors(100)
    shas = [f"{i:064x}" for i in range(100)]
    GraphStore(tmp_path, "m", shas[:40]).save(x[:40], *_full(x[:40]))
    assert GraphStore(tmp_path, "m", shas).load(x, 11) is None  # 40 % of the rows: searched whole instead
    GraphStore(tmp_path, "m", shas[:90]).save(x[:90], *_full(x[:90]))
    other = _vectors(90, seed=1)  # the same contents named, other vectors (a changed store): the sample disagrees
    assert GraphStore(tmp_path, "m", shas[:90]).load(other, 11) is None
    assert GraphStore(tmp_path, "m", shas[:90]).load(x[:90], 12) is None  # fewer neighbours kept than asked for


def test_images_that_left_the_dataset_are_searched_around(tmp_path, monkeypatch):
    """Rows of a kept graph that are gone: the kept rows that had one among their nearest are searched again, the
    others keep their neighbours; the graph is the full search's."""
    x = _vectors(200, seed=3)
    shas = [f"{i:064x}" for i in range(200)]
    GraphStore(tmp_path, "m", shas[:190]).save(x[:190], *_full(x[:190]))
    left = list(range(5, 200))  # 5 kept images removed, 10 new ones
    store = GraphStore(tmp_path, "m", [shas[i] for i in left])
    (sims, ids), searched = _loaded_counting_searches(store, x[left], monkeypatch)
    again = searched[0] - 10  # kept rows searched again: those that had a removed image among their 11 nearest
    kept = _full(x[:190])[1][5:]
    assert again == int(np.isin(kept, np.arange(5)).any(axis=1).sum()) and 0 < again < 90
    assert np.array_equal(ids, _full(x[left])[1]) and store.extended_rows == 10 + again


def test_damaged_graphs_are_ignored_and_only_the_newest_are_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(graph_store, "KEPT", 2)
    x = _vectors(60)
    shas = [f"{i:064x}" for i in range(60)]
    store = GraphStore(tmp_path, "m", shas)
    (store.folder / "graph-broken.npz").write_bytes(b"not a zip")
    (store.folder / "graph-truncated.npz").write_bytes(b"PK\x03\x04" + b"x" * 100)  # a zip cut short
    assert store.load(x, 11) is None
    for n in (50, 55, 60):
        GraphStore(tmp_path, "m", shas[:n]).save(x[:n], *_full(x[:n]))
    assert len(list(store.folder.glob("graph-*.npz"))) == 2
    assert np.array_equal(store.load(x, 11)[1], _full(x)[1])
    sims, ids = _full(x)
    ids[0, 1] = 60  # a neighbour past the rows: malformed
    bad = GraphStore(tmp_path, "bad", shas)
    bad.save(x, sims, ids)
    assert bad.load(x, 11) is None


def test_a_cache_that_cannot_be_written_only_loses_the_saving(tmp_path):
    x = _vectors(30)
    store = GraphStore(tmp_path, "m", [f"{i:064x}" for i in range(30)])
    (tmp_path / "a-file").write_text("not a folder")
    store.folder = tmp_path / "a-file" / "graphs"  # no file can be written there, whoever runs the test
    store.save(x, *_full(x))  # no error
    assert store.load(x, 11) is None


def _context_with_cache(directory, seed: int = 0):
    from types import SimpleNamespace

    from auditor.encoding.cache import Cache
    from tests.checks.synthetic_audit import synthetic_context

    rng = np.random.default_rng(seed)
    ctx = synthetic_context([{"path": f"train/a/{i}.jpg", "label": "a", "vector": rng.normal(size=16)}
                             for i in range(40)])
    ctx.cache = Cache(directory)
    ctx.backbone = SimpleNamespace(cache_key="test-model", dim=16)
    return ctx


def test_an_audit_keeps_its_graph_and_the_next_audit_reads_it(tmp_path, monkeypatch):
    monkeypatch.setattr(neighbour_search, "_exact_graphs", {})
    first = _context_with_cache(tmp_path)
    graph = neighbour_search.knn(first.unit_matrix, 11)
    assert first.graph_store is not None and list(first.graph_store.folder.glob("graph-*.npz"))
    monkeypatch.setattr(neighbour_search, "_exact_graphs", {})  # the next audit, in another process
    second = _context_with_cache(tmp_path)
    monkeypatch.setattr(neighbour_search, "_exact_search", lambda *a: pytest.fail("searched again"))
    assert np.array_equal(neighbour_search.knn(second.unit_matrix, 11)[1], graph[1])
    assert second.graph_store.loaded_from is not None


def test_a_cache_folder_that_cannot_take_the_graphs_leaves_the_search_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setattr(neighbour_search, "_exact_graphs", {})
    (tmp_path / "knn-graphs").write_text("a file where the folder would go")
    ctx = _context_with_cache(tmp_path, seed=1)
    sims, ids = neighbour_search.knn(ctx.unit_matrix, 5)
    assert ctx.graph_store is None and ids.shape == (40, 5)
