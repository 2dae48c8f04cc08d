"""The embedding store: content-keyed float16 unit vectors in memory-mappable chunk files beside the SQLite cache.

A million 1280-d embeddings are 5 GB as float32 SQLite rows, read back one Python object per row. Here
they are plain `.npy` matrices (never pickle; read with `np.load(mmap_mode="r", allow_pickle=False)`), so
checks read them as arrays, and the SQLite file keeps only where each content's row is:

    <cache_dir>/embeddings/<sha256(STORE_VERSION|model key)[:24]>/
        key.txt                 the full model key, for people
        chunk-<uuid>.npy        float16 (n, d): L2-normalised vectors (every consumer compares directions)
    cache.sqlite3
        embedding_chunks(model, chunk, rows, dim)           a chunk readers may use
        embedding_rows(model, sha256, chunk, row, norm)     where a content's vector is, and its L2 norm

Keys are the backbone's cache key (name, weights hash, preprocessing, input size, precision), as before:
a vector from other weights or another input size is never mixed in. The norm is kept, so the raw vector
is `unit × norm` (float16 rounding: about 5e-4 relative per component; cosines move by about 1e-5).

Writing a batch: its `.npy` is written to a temporary file and renamed, then one transaction adds the chunk
and its rows; that commit is the mark. A run killed in between leaves a file no row names, removed once it
is a day old. Reading: a dataset whose rows sit in order in one chunk is a zero-copy slice of one memory
map; otherwise rows are gathered chunk by chunk, and when they are too many to gather into memory the store
rewrites them, in the order asked for, into one chunk (`compact`), so every later audit of the same
dataset reads one slice. Rows left in no chunk's use are deleted with their files.

Embeddings written by earlier versions (float32 rows in the SQLite table `embeddings`) are migrated lazily:
a content the store lacks is looked up there, copied into the store, and the old row is left alone (older
versions sharing the cache keep working).
"""

from __future__ import annotations

import os
import time
import uuid
from array import array
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np

from auditor.atomic import atomic_write_bytes

STORE_VERSION = "emb-unit-f16-v1"
SCHEMA = """
CREATE TABLE IF NOT EXISTS embedding_chunks (model TEXT NOT NULL, chunk TEXT NOT NULL, rows INTEGER NOT NULL,
                                             dim INTEGER NOT NULL, PRIMARY KEY (model, chunk));
CREATE TABLE IF NOT EXISTS embedding_rows (model TEXT NOT NULL, sha256 TEXT NOT NULL, chunk TEXT NOT NULL,
                                           row INTEGER NOT NULL, norm REAL NOT NULL, PRIMARY KEY (model, sha256));
CREATE INDEX IF NOT EXISTS embedding_rows_by_chunk ON embedding_rows (model, chunk);
"""
GATHER_IN_MEMORY_BYTES = 256 * 2**20  # larger gathers from many chunks are compacted into one chunk instead
MAX_OPEN_MAPS = 256  # chunk files kept memory-mapped at once: each map holds a file descriptor (Python's mmap keeps a
# duplicate), and an encode writes one chunk a batch — 31 250 chunks at 10⁶ images, more than a process may open
# (20 000 on this machine, 1 024 on many): the first audit of 10⁶ images failed there, reading them all to compact
COMPACT_BLOCK_ROWS = 65_536
_STALE_S = 24 * 3600
_QUERY_CHUNK = 900  # SQLite's variable limit is 999 on old builds


def remember_map(maps: dict, key, array: np.ndarray, limit: int | None = None) -> np.ndarray:
    """Keep `array` in `maps`, forgetting the least recently used ones beyond `limit` (MAX_OPEN_MAPS). A forgotten
    map stays valid for whoever still holds it (views of it keep it alive); its file descriptor goes with it."""
    maps.pop(key, None)
    maps[key] = array
    while len(maps) > (limit or MAX_OPEN_MAPS):
        maps.pop(next(iter(maps)))
    return array


def to_float32(x: np.ndarray) -> np.ndarray:
    """float16 → float32 with FAISS's F16C code (about 3× numpy's cast; the bits are the same)."""
    x = np.asarray(x)
    if x.dtype != np.float16:
        return np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or not len(x):
        return x.astype(np.float32)
    return _codec(x.shape[1]).sa_decode(np.ascontiguousarray(x).view(np.uint8))


_codecs: dict[int, object] = {}


def _codec(dim: int):
    codec = _codecs.get(dim)
    if codec is None:
        import faiss

        codec = _codecs[dim] = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16)
    return codec


def count_stored(db, model: str, shas: Iterable[str]) -> int:
    """How many of these contents have a stored row under `model`: a count only (no store opened, no folder made,
    nothing indexed or migrated), 0 in a cache no store was ever written to."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'embedding_rows'").fetchone():
        return 0
    wanted, count = list(dict.fromkeys(shas)), 0
    for start in range(0, len(wanted), _QUERY_CHUNK):
        part = wanted[start:start + _QUERY_CHUNK]
        marks = ",".join("?" * len(part))
        count += db.execute(f"SELECT COUNT(*) FROM embedding_rows WHERE model = ? AND sha256 IN ({marks})",
                            (model, *part)).fetchone()[0]
    return count


class EmbeddingStore:
    """Content-keyed unit embeddings of one model key, on disk (or in a private temp folder for --no-cache)."""

    def __init__(self, db, directory: Path | None, model: str):
        from auditor.encoding.keyed_folder import keyed_folder

        self._db = db
        self.model = model
        self.folder, self._tmp = keyed_folder(directory, "embeddings", STORE_VERSION, model)
        with self._db:
            self._db.executescript(SCHEMA)
        self.dim: int | None = None
        self._slot: dict[str, int] = {}  # sha → position in the parallel arrays below
        self._chunk_no = array("i")
        self._row = array("q")
        self._norm = array("f")
        self._chunk_names: list[str] = []
        self._chunk_index: dict[str, int] = {}
        self._maps: dict[int, np.ndarray] = {}
        self.migrated = 0  # rows copied from the old SQLite table by this process
        self.written = 0  # rows written by this process

    # Index ------------------------------------------------------------------------------------
    def _chunk_number(self, name: str) -> int:
        number = self._chunk_index.get(name)
        if number is None:
            number = self._chunk_index[name] = len(self._chunk_names)
            self._chunk_names.append(name)
        return number

    def _remember(self, sha: str, chunk: str, row: int, norm: float) -> None:
        slot = self._slot.get(sha)
        if slot is None:
            self._slot[sha] = len(self._row)
            self._chunk_no.append(self._chunk_number(chunk))
            self._row.append(row)
            self._norm.append(norm)
        else:
            self._chunk_no[slot], self._row[slot], self._norm[slot] = self._chunk_number(chunk), row, norm

    def load(self, shas: Iterable[str], migrate: bool = True) -> int:
        """Index the stored rows of `shas` (and migrate those only the old table has). Returns how many are present."""
        wanted = [s for s in dict.fromkeys(shas) if s not in self._slot]
        if self.dim is None:
            row = self._db.execute("SELECT dim FROM embedding_chunks WHERE model = ? LIMIT 1", (self.model,)).fetchone()
            self.dim = int(row[0]) if row else None
        for start in range(0, len(wanted), _QUERY_CHUNK):
            part = wanted[start:start + _QUERY_CHUNK]
            marks = ",".join("?" * len(part))
            rows = self._db.execute(
                f"SELECT sha256, chunk, row, norm FROM embedding_rows WHERE model = ? AND sha256 IN ({marks})",
                (self.model, *part))
            by_sha = {sha: (chunk, r, norm) for sha, chunk, r, norm in rows}
            for sha in part:  # the caller's string objects become the keys (no second copy of a million shas)
                found = by_sha.get(sha)
                if found is not None:
                    self._remember(sha, *found)
        if migrate:
            self._migrate([s for s in wanted if s not in self._slot])
        return sum(1 for s in dict.fromkeys(shas) if s in self._slot)

    def _migrate(self, shas: list[str]) -> None:
        """Copy rows of the old float32 table (`embeddings`) into the store; the old rows stay."""
        if not shas or not self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'embeddings'").fetchone():
            return
        found_shas, vectors = [], []
        for start in range(0, len(shas), _QUERY_CHUNK):
            part = shas[start:start + _QUERY_CHUNK]
            marks = ",".join("?" * len(part))
            for sha, dim, blob in self._db.execute(
                    f"SELECT sha256, dim, vector FROM embeddings WHERE model = ? AND sha256 IN ({marks})",
                    (self.model, *part)):
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.size == dim and (self.dim is None or dim == self.dim):  # damaged rows stay missing
                    found_shas.append(sha)
                    vectors.append(vector)
            if len(found_shas) >= COMPACT_BLOCK_ROWS:
                self.put(found_shas, np.stack(vectors))
                self.migrated += len(found_shas)
                found_shas, vectors = [], []
        if found_shas:
            self.put(found_shas, np.stack(vectors))
            self.migrated += len(found_shas)

    def __contains__(self, sha: object) -> bool:
        return sha in self._slot

    def __len__(self) -> int:
        return len(self._slot)

    def shas(self) -> Iterator[str]:
        return iter(self._slot)

    def slots(self, shas: list[str]) -> np.ndarray:
        return np.fromiter((self._slot[s] for s in shas), dtype=np.int64, count=len(shas))

    def norms(self, shas: list[str]) -> np.ndarray:
        return np.frombuffer(self._norm, dtype=np.float32)[self.slots(shas)]

    # Writing ----------------------------------------------------------------------------------
    def put(self, shas: list[str], vectors: np.ndarray) -> None:
        """Commit one batch of raw vectors (stored as float16 unit vectors + float32 norms)."""
        if not len(shas):
            return
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(shas), -1)
        if self.dim is None:
            self.dim = int(vectors.shape[1])
        elif vectors.shape[1] != self.dim:
            raise ValueError(f"embeddings of {vectors.shape[1]} dimensions do not match the store's {self.dim}")
        norms = np.linalg.norm(vectors, axis=1)
        unit = (vectors / np.maximum(norms, 1e-12)[:, None]).astype(np.float16)
        name = f"chunk-{uuid.uuid4().hex}.npy"
        import io

        buffer = io.BytesIO()
        np.save(buffer, unit, allow_pickle=False)
        atomic_write_bytes(self.folder / name, buffer.getvalue())
        self._commit(name, shas, np.arange(len(shas)), norms)
        self.written += len(shas)

    def _commit(self, name: str, shas: list[str], rows: np.ndarray, norms: np.ndarray) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO embedding_chunks VALUES (?, ?, ?, ?)",
                             (self.model, name, len(shas), self.dim))
            self._db.executemany("INSERT OR REPLACE INTO embedding_rows VALUES (?, ?, ?, ?, ?)",
                                 zip([self.model] * len(shas), shas, [name] * len(shas), rows.tolist(),
                                     np.asarray(norms, dtype=np.float64).tolist()))
        for sha, row, norm in zip(shas, rows.tolist(), np.asarray(norms).tolist()):
            self._remember(sha, name, int(row), float(norm))

    # Reading ----------------------------------------------------------------------------------
    def _map(self, number: int) -> np.ndarray:
        array_ = self._maps.get(number)
        if array_ is None:
            array_ = np.load(self.folder / self._chunk_names[number], mmap_mode="r", allow_pickle=False)
            if array_.dtype != np.float16 or array_.ndim != 2:
                raise ValueError(f"embedding chunk {self._chunk_names[number]} has dtype {array_.dtype}")
        return remember_map(self._maps, number, array_)

    def vector(self, sha: str) -> np.ndarray:
        """The raw vector (unit × norm) as float32."""
        slot = self._slot[sha]
        return self._map(self._chunk_no[slot])[self._row[slot]].astype(np.float32) * self._norm[slot]

    def unit_rows(self, shas: list[str], compact: bool = True) -> np.ndarray:
        """float16 unit vectors of `shas`, in that order: a read-only memory-map slice when they lie in order in
        one chunk, else gathered into memory, or (too many to gather, `compact`) rewritten into one chunk first."""
        if self.dim is None or not len(shas):
            return np.zeros((len(shas), self.dim or 0), dtype=np.float16)
        slots = self.slots(shas)
        chunk_no = np.frombuffer(self._chunk_no, dtype=np.int32)[slots]
        rows = np.frombuffer(self._row, dtype=np.int64)[slots]
        single = bool((chunk_no == chunk_no[0]).all())
        if single and rows[-1] - rows[0] == len(rows) - 1 and bool((np.diff(rows) == 1).all()):
            return self._map(int(chunk_no[0]))[rows[0]:rows[-1] + 1]
        if compact and len(shas) * self.dim * 2 > GATHER_IN_MEMORY_BYTES:
            self.compact(shas)
            return self.unit_rows(shas, compact=False)
        return self._gather(chunk_no, rows)

    def _gather(self, chunk_no: np.ndarray, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        out = np.empty((len(rows), self.dim), dtype=np.float16) if out is None else out
        order = np.argsort(chunk_no, kind="stable")
        bounds = np.flatnonzero(np.diff(chunk_no[order])) + 1
        for group in np.split(order, bounds):
            if len(group):
                source_rows = rows[group]
                sort = np.argsort(source_rows)  # ascending reads: sequential pages of the memory map
                out[group[sort]] = self._map(int(chunk_no[group[0]]))[source_rows[sort]]
        return out

    def compact(self, shas: list[str]) -> None:
        """Rewrite the rows of `shas` into one new chunk, in that order (streamed in blocks, atomically), then
        point the index at it and drop chunks no row uses any more."""
        slots = self.slots(shas)
        chunk_no = np.frombuffer(self._chunk_no, dtype=np.int32)[slots]
        rows = np.frombuffer(self._row, dtype=np.int64)[slots]
        norms = np.frombuffer(self._norm, dtype=np.float32)[slots]
        name = f"chunk-{uuid.uuid4().hex}.npy"
        target = self.folder / name
        tmp = self.folder / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(shas), self.dim))
            for start in range(0, len(shas), COMPACT_BLOCK_ROWS):
                stop = min(len(shas), start + COMPACT_BLOCK_ROWS)
                out[start:stop] = self._gather(chunk_no[start:stop], rows[start:stop])
            out.flush()
            del out
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        old = {self._chunk_names[c] for c in np.unique(chunk_no).tolist()}
        self._commit(name, list(shas), np.arange(len(shas)), norms)
        self._drop_unused(old)

    def _drop_unused(self, candidates: set[str]) -> None:
        """Forget (and delete) chunks no row points to any more. Another process may still have one mapped:
        on POSIX its mapping stays valid after the unlink."""
        for name in candidates:
            used = self._db.execute("SELECT 1 FROM embedding_rows WHERE model = ? AND chunk = ? LIMIT 1",
                                    (self.model, name)).fetchone()
            if used:
                continue
            with self._db:
                self._db.execute("DELETE FROM embedding_chunks WHERE model = ? AND chunk = ?", (self.model, name))
            number = self._chunk_index.get(name)
            if number is not None:
                self._maps.pop(number, None)
            (self.folder / name).unlink(missing_ok=True)

    def remove_stale_files(self) -> None:
        """Delete chunk files no committed chunk names (a run killed between the rename and the commit), once a day old."""
        known = {row[0] for row in self._db.execute("SELECT chunk FROM embedding_chunks WHERE model = ?", (self.model,))}
        now = time.time()
        for entry in self.folder.iterdir():
            if entry.name == "key.txt" or entry.name in known:
                continue
            try:
                if now - entry.stat().st_mtime > _STALE_S:
                    entry.unlink(missing_ok=True)
            except OSError:
                continue

    def close(self) -> None:
        self._maps.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class StoredEmbeddings(Mapping):
    """`Encoded.embeddings`: sha → raw float32 vector, for the contents of this audit, backed by the store.

    Membership and length are O(1); `unit_rows` is the bulk path (no per-row Python work)."""

    def __init__(self, store: EmbeddingStore):
        self.store = store

    def __getitem__(self, sha: str) -> np.ndarray:
        if sha not in self.store:
            raise KeyError(sha)
        return self.store.vector(sha)

    def __contains__(self, sha: object) -> bool:
        return sha in self.store

    def __iter__(self) -> Iterator[str]:
        return self.store.shas()

    def __len__(self) -> int:
        return len(self.store)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping) and not isinstance(other, StoredEmbeddings):
            return len(other) == len(self) and all(
                k in self and np.array_equal(self[k], v) for k, v in other.items())
        return self is other

    def unit_rows(self, shas: list[str]) -> np.ndarray:
        return self.store.unit_rows(shas)

