"""Exact k-NN graphs kept in the cache, so an audit of a dataset that grew searches only what is new.

Up to `neighbours.EXACT_LIMIT` images every check's self-query reads one exact k-NN graph of the dataset's unit
embeddings (`neighbours._exact_self_graph`): n² similarities, the largest single cost of a merge gate at 10 000
images, where 99 % of the rows were searched by the existing dataset's own audit. Here each graph an audit
computes is kept beside the embedding store, keyed by the backbone and by its rows' contents:

    <cache_dir>/knn-graphs/<sha256(GRAPH_VERSION|model key)[:24]>/
        key.txt                the model key, for people
        graph-<digest>.npz     shas ('S64', the rows' contents in order), sims (float32 n × k), ids (int32 n × k)

(`np.load(allow_pickle=False)`; written atomically.) An audit at least half of whose rows a kept graph knows
extends it (`neighbours.extend_exact_graph`): only the new rows are searched, and the kept rows one of whose
nearest neighbours has left the dataset. Before a kept graph is used, a sample of its similarities is recomputed
from this audit's vectors; a graph they do not match (other vectors under the same contents) is not used. The
`KEPT` most recently used graphs of a model are kept, the rest deleted.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np

GRAPH_VERSION = "exact-knn-v1"
KEPT = 4  # graphs per model key (≤ 3 MB each at the exact-search limit)
MIN_KNOWN_SHARE = 0.5  # a kept graph is extended only when it holds at least this share of the rows
CHECKED_PAIRS = 256  # kept similarities recomputed before a graph is used
TOLERANCE = 1e-4  # float16 rows, float32 products: equal values agree to ≈ 1e-7


class GraphStore:
    """The exact k-NN graphs of one model key in one cache folder, for the rows `shas` of one matrix."""

    def __init__(self, directory: Path, model: str, shas: list[str]):
        from auditor.encoding.keyed_folder import keyed_folder

        self.folder, _ = keyed_folder(Path(directory), "knn-graphs", GRAPH_VERSION, model)
        self.shas = shas
        self.loaded_from: str | None = None  # the kept graph the last load used
        self.extended_rows = 0  # rows it searched (new, or kept rows that lost a neighbour)

    # Reading -----------------------------------------------------------------------------------------------
    def load(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """This matrix's graph of k neighbours from the largest usable kept graph (extended when it lacks rows and
        then kept too), or None."""
        from auditor.similarity.neighbours import extend_exact_graph

        row_of = {sha.encode(): row for row, sha in enumerate(self.shas)}
        best = None
        for path in self._graphs():
            found = _read(path)
            if found is None or found[1].shape[1] < k:
                continue
            kept_shas, sims, ids = found
            rows = np.fromiter((row_of.get(sha, -1) for sha in kept_shas.tolist()), np.int64, len(kept_shas))
            neighbours = np.where(ids[:, :k] >= 0, rows[np.maximum(ids[:, :k], 0)], -1)
            # A kept row is known when it is still a row and none of its k nearest has left the dataset (its
            # nearest among what is left would need a search): the others are searched like new rows.
            gone = (ids[:, :k] >= 0) & (neighbours < 0)
            known = (rows >= 0) & ~gone.any(axis=1)
            too_few = known.sum() < max(MIN_KNOWN_SHARE * len(self.shas), 1)
            if too_few or (best is not None and known.sum() <= len(best[0])):
                continue
            if _agrees(x, rows[known], sims[known], neighbours[known]):
                best = (rows[known], sims[known], neighbours[known], path)
        if best is None:
            return None
        rows, sims, neighbours, path = best
        try:
            os.utime(path)  # used: kept longest
        except OSError:  # another audit pruned it meanwhile: what was read stands
            pass
        self.loaded_from = path.name
        if len(rows) == len(self.shas) and np.array_equal(rows, np.arange(len(rows))):
            return sims[:, :k].astype(np.float32), neighbours.astype(np.int64)
        graph = extend_exact_graph(x, rows, sims, neighbours, k)
        self.extended_rows = len(self.shas) - len(rows)
        self.save(x, *graph)
        return graph

    def _graphs(self) -> list[Path]:
        try:
            return sorted(self.folder.glob("graph-*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
        except OSError:
            return []

    # Writing -----------------------------------------------------------------------------------------------
    def save(self, x: np.ndarray, sims: np.ndarray, ids: np.ndarray) -> None:
        """Keep this matrix's graph (a cache that cannot be written is not an error: the graph is only saved work)."""
        from auditor.atomic import atomic_write_bytes
        from auditor.errors import AuditorError

        names = np.array(self.shas, dtype="S64")
        digest = hashlib.sha256(names.tobytes() + str(sims.shape).encode()).hexdigest()[:32]
        buffer = io.BytesIO()
        np.savez(buffer, shas=names, sims=np.asarray(sims, np.float32), ids=np.asarray(ids, np.int32))
        try:
            atomic_write_bytes(self.folder / f"graph-{digest}.npz", buffer.getvalue())
            for stale in self._graphs()[KEPT:]:
                stale.unlink(missing_ok=True)
        except (OSError, AuditorError):  # atomic_write_bytes names an OS error as an AuditorError
            pass


def _read(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(shas, sims, ids) of a kept graph, or None when it is unreadable or malformed."""
    try:
        with np.load(path, allow_pickle=False) as kept:
            shas, sims, ids = kept["shas"], kept["sims"], kept["ids"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # a truncated or foreign file
        return None
    n = len(shas)
    if (shas.ndim != 1 or sims.ndim != 2 or sims.shape != ids.shape or len(sims) != n or sims.dtype != np.float32
            or ids.dtype != np.int32 or (n and (ids.max() >= n or ids.min() < -1))):
        return None
    return shas, sims, ids


def _agrees(x: np.ndarray, rows: np.ndarray, sims: np.ndarray, neighbours: np.ndarray) -> bool:
    """Whether a seeded sample of the kept similarities (rows of x, their neighbours as rows of x) is what this
    matrix gives."""
    from auditor.similarity.neighbours import _f32

    rng = np.random.default_rng(0)
    picked = rng.integers(0, len(rows), CHECKED_PAIRS)
    ranks = rng.integers(0, neighbours.shape[1], CHECKED_PAIRS)
    partner = neighbours[picked, ranks]
    real = partner >= 0
    if not real.any():
        return True
    recomputed = np.einsum("ij,ij->i", _f32(x[rows[picked[real]]]), _f32(x[partner[real]]))
    return bool(np.all(np.abs(recomputed - sims[picked[real], ranks[real]]) <= TOLERANCE))
