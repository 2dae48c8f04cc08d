"""The on-disk cache: scans and embeddings keyed by file content, never by path.

One SQLite file outside the dataset (`~/.cache/auditor/cache.sqlite3` or --cache-dir). SQLite gives
atomic commits, so a run killed mid-way leaves only whole entries and the next run reuses them.
The dataset's embeddings live in the embedding store (`embedding_store`: float16 chunk files beside this
file, indexed here), under a key that names the backbone and its preprocessing, so changing either
recomputes rather than mixing vectors. The `embeddings` table (raw float32 rows, never pickle) keeps small
keyed vectors (the calibration copies) and the dataset vectors of earlier versions, which the store
migrates lazily.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from auditor.errors import AuditorError
from auditor.encoding.imaging import SCAN_VERSION, ImageScan

SCHEMA = """
CREATE TABLE IF NOT EXISTS scans (sha256 TEXT NOT NULL, version INTEGER NOT NULL, data TEXT NOT NULL,
                                  PRIMARY KEY (sha256, version));
CREATE TABLE IF NOT EXISTS check_results (key TEXT NOT NULL, check_id TEXT NOT NULL, data TEXT NOT NULL,
                                          PRIMARY KEY (key, check_id));
CREATE TABLE IF NOT EXISTS embeddings (sha256 TEXT NOT NULL, model TEXT NOT NULL, dim INTEGER NOT NULL,
                                       vector BLOB NOT NULL, PRIMARY KEY (sha256, model));
"""
# Pixel evidence was a table of this file until it became keyed rows beside it (similarity/pixel_memo.py): an older
# cache's table is dropped once, when this version first opens it (15 M rows, ≈ 1 GB, at 10⁶ images).
RETIRED = "DROP TABLE IF EXISTS pixel_evidence;"


class Cache:
    """A thin, typed wrapper over the SQLite file. `Cache(None)` is an in-memory cache (--no-cache)."""

    def __init__(self, directory: Path | None):
        self.directory = None if directory is None else Path(directory)
        self.path = None if directory is None else Path(directory) / "cache.sqlite3"
        self._stores: dict[str, object] = {}
        self._pixel_rows: tuple | None = None  # the pixel evidence's two stores (pixel_memo), made at first use
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path) if self.path else ":memory:", timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise AuditorError(
                f"cannot open the cache at {self.path}: {exc}",
                "Pass --cache-dir DIR with a writable folder, or --no-cache.",
            ) from None
        try:  # looked up first: a DROP, even of nothing, waits for other audits' writes to this file
            if self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'pixel_evidence'").fetchone():
                self._db.executescript(RETIRED)
        except sqlite3.Error:  # a cache opened read-only, or busy: the old table is only unused space
            pass

    def close(self) -> None:
        for rows in self._pixel_rows or ():
            rows.flush()
        for store in self._stores.values():
            store.close()
        self._stores.clear()
        self._db.close()

    def embedding_store(self, model: str):
        """The dataset embeddings of one model key (auditor.encoding.embedding_store), one per model per cache."""
        from auditor.encoding.embedding_store import EmbeddingStore

        store = self._stores.get(model)
        if store is None:
            store = self._stores[model] = EmbeddingStore(self._db, self.directory, model)
        return store

    def count_stored_embeddings(self, model: str, shas: Iterable[str]) -> int:
        """How many of these contents have an embedding stored under this model key (nothing is opened or made)."""
        from auditor.encoding.embedding_store import count_stored

        return count_stored(self._db, model, shas)

    # Scans -----------------------------------------------------------------------------------
    def get_scans(self, hashes: Iterable[str], each_chunk: Callable[[list[ImageScan]], None] | None = None
                  ) -> dict[str, ImageScan]:
        """The cached scans of these contents. `each_chunk(scans)` is called on every chunk read, before the next
        (an encode moves their thumbnails into its table there, so a million are never held as text at once)."""
        found: dict[str, ImageScan] = {}
        for chunk in _chunks(list(hashes), 900):
            read: list[ImageScan] = []
            asked = {sha: sha for sha in chunk}  # key and scan share the caller's string (113 bytes a scan, 10⁶ scans)
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT sha256, data FROM scans WHERE version = ? AND sha256 IN ({marks})", (SCAN_VERSION, *chunk)
            )
            for sha, data in rows:
                scan = ImageScan.from_json(json.loads(data))
                scan.sha256 = sha = asked.get(sha, sha)
                found[sha] = scan
                read.append(scan)
            if each_chunk is not None:
                each_chunk(read)
        return found

    def put_scans(self, scans: Iterable[ImageScan]) -> None:
        rows = [(s.sha256, SCAN_VERSION, json.dumps(s.to_json())) for s in scans]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO scans VALUES (?, ?, ?)", rows)

    # Embeddings ------------------------------------------------------------------------------
    def get_embeddings(self, model: str, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for chunk in _chunks(list(hashes), 900):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT sha256, dim, vector FROM embeddings WHERE model = ? AND sha256 IN ({marks})", (model, *chunk)
            )
            for sha, dim, blob in rows:
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.size == dim:  # a damaged row is treated as missing and recomputed
                    found[sha] = vector
        return found

    def put_embeddings(self, model: str, hashes: list[str], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        rows = [(sha, model, int(v.size), v.tobytes()) for sha, v in zip(hashes, vectors)]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", rows)

    # Check results ---------------------------------------------------------------------------
    def get_check_result(self, key: str, check_id: str) -> dict | None:
        row = self._db.execute(
            "SELECT data FROM check_results WHERE key = ? AND check_id = ?", (key, check_id)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def put_check_result(self, key: str, check_id: str, data: dict) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO check_results VALUES (?, ?, ?)", (key, check_id, json.dumps(data)))

    # Pixel evidence (similarity/pixel_memo.py) --------------------------------------------------------
    def pixel_memo(self):
        """Pixel evidence remembered across audits: two stores of keyed rows (encoding/keyed_rows.py) beside this
        file, `pixel-evidence/<version and kind>/`; in memory, shared by this cache's memos, without a folder."""
        from auditor.similarity.pixel_memo import CODE_WORDS, PIXEL_EVIDENCE_VERSION, STORE_VERSION, PixelMemo

        if self._pixel_rows is None:
            from auditor.encoding.keyed_rows import KeyedRows

            version = f"{STORE_VERSION}|{PIXEL_EVIDENCE_VERSION.decode()}"
            self._pixel_rows = tuple(KeyedRows(self._rows_folder(version, kind), width)
                                     for kind, width in (("pairs", 1), ("codes", CODE_WORDS)))
        return PixelMemo(*self._pixel_rows)

    def _rows_folder(self, version: str, kind: str) -> Path | None:
        """The keyed folder of one kind of pixel evidence, or None (kept in memory) without a cache directory or
        where it cannot be made (a read-only cache still serves the rest; the evidence is only saved work)."""
        if self.directory is None:
            return None
        from auditor.encoding.keyed_folder import keyed_folder

        try:
            return keyed_folder(self.directory, "pixel-evidence", version, kind)[0]
        except (OSError, AuditorError):
            return None

    def count_embeddings(self, model: str) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM embeddings WHERE model = ?", (model,)).fetchone()[0])


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]
