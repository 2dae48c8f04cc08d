"""The feature-map cache: the frozen base's (H, W, C) output per image, float16, memory-mapped.

The reference fine-tune trains a head on the base's spatial feature maps. The base is frozen, so
each image's map is computed once (in the same pass as its embedding) and kept here, keyed like the
embeddings: by file content (sha256) under the backbone's cache key. A 7×7×1280 map is 125 KB in
float16, too big for SQLite rows, so maps live in plain `.npy` chunk files (never pickle; read with
`np.load(allow_pickle=False, mmap_mode="r")`), one folder per backbone key:

    <cache_dir>/feature_maps/<sha256(backbone key)[:24]>/
        key.txt                 the full backbone key, for people
        chunk-<id>.npy          float16 (n, H, W, C)
        chunk-<id>.json         {"shas": [...], "shape": [H, W, C]}: written last, the chunk's commit mark

A chunk's `.npy` is written to a temporary file and renamed, then its `.json` the same way; a run
killed at any point leaves either a whole chunk or files that no index names (ignored, and cleaned up
when older than a day).
"""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path
from typing import Iterable

import numpy as np

from auditor.encoding.embedding_store import remember_map
from auditor.encoding.keyed_folder import keyed_folder
from auditor.atomic import atomic_write_bytes, atomic_write_text

STORE_VERSION = "fmap-f16-v1"
_STALE_TMP_S = 24 * 3600


class FeatureMapStore:
    """Content-keyed float16 feature maps for one backbone key. `directory=None`: a private temp folder."""

    def __init__(self, directory: Path | None, backbone_key: str):
        self.backbone_key = backbone_key
        self.folder, self._tmp = keyed_folder(directory, "feature_maps", STORE_VERSION, backbone_key)
        self._where: dict[str, tuple[str, int]] = {}  # sha → (chunk file name, row)
        self._arrays: dict[str, np.ndarray] = {}  # chunk file name → memory map
        self.shape: tuple[int, ...] | None = None
        self.computed = 0  # maps written by this process
        self.refresh()

    # Reading ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Index every committed chunk (a chunk without its .json was never committed)."""
        now = time.time()
        for entry in sorted(self.folder.iterdir()):
            name = entry.name
            if name.endswith(".tmp"):
                if now - entry.stat().st_mtime > _STALE_TMP_S:
                    entry.unlink(missing_ok=True)
                continue
            if not (name.startswith("chunk-") and name.endswith(".json")):
                continue
            npy = name[: -len(".json")] + ".npy"
            if any(chunk == npy for chunk, _ in self._where.values()):
                continue
            try:
                meta = json.loads(entry.read_text())
                shas = [str(s) for s in meta["shas"]]
                shape = tuple(int(d) for d in meta["shape"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged index: its maps are treated as missing and recomputed
            if not (self.folder / npy).is_file():
                continue
            if self.shape is None:
                self.shape = shape
            if shape != self.shape:
                continue
            for row, sha in enumerate(shas):
                self._where.setdefault(sha, (npy, row))

    def __contains__(self, sha: str) -> bool:
        return sha in self._where

    def __len__(self) -> int:
        return len(self._where)

    def missing(self, shas: Iterable[str]) -> list[str]:
        return [s for s in shas if s not in self._where]

    def _array(self, chunk: str) -> np.ndarray:
        array = self._arrays.get(chunk)
        if array is None:
            array = np.load(self.folder / chunk, mmap_mode="r", allow_pickle=False)
            if array.dtype != np.float16 or array.ndim != 4:
                raise ValueError(f"feature-map chunk {chunk} has dtype {array.dtype} and {array.ndim} dimensions")
        return remember_map(self._arrays, chunk, array)  # a bounded number of open maps (embedding_store)

    def get(self, sha: str) -> np.ndarray:
        """One map (a read-only view into the memory map)."""
        chunk, row = self._where[sha]
        return self._array(chunk)[row]

    def gather(self, shas: list[str], out: np.ndarray | None = None) -> np.ndarray:
        """Maps for `shas` in that order, copied into one float16 array (N, H, W, C)."""
        if self.shape is None and not shas:
            return np.zeros((0, 0, 0, 0), np.float16)
        if out is None:
            out = np.empty((len(shas), *self.shape), np.float16)
        for i, sha in enumerate(shas):
            out[i] = self.get(sha)
        return out

    # Writing ---------------------------------------------------------------------------------
    def put(self, shas: list[str], maps: np.ndarray) -> None:
        """Commit one chunk of maps (float16). Already-present contents are skipped."""
        keep = [i for i, sha in enumerate(shas) if sha not in self._where]
        if not keep:
            return
        maps = np.ascontiguousarray(np.asarray(maps)[keep], dtype=np.float16)
        shas = [shas[i] for i in keep]
        shape = tuple(int(d) for d in maps.shape[1:])
        if self.shape is None:
            self.shape = shape
        elif shape != self.shape:
            raise ValueError(f"feature maps of shape {shape} do not match the store's {self.shape}")
        name = f"chunk-{uuid.uuid4().hex}"
        npy = self.folder / f"{name}.npy"
        buffer = io.BytesIO()
        np.save(buffer, maps, allow_pickle=False)
        atomic_write_bytes(npy, buffer.getvalue())
        atomic_write_text(self.folder / f"{name}.json", json.dumps({"shas": shas, "shape": list(shape)}))
        for row, sha in enumerate(shas):
            self._where[sha] = (npy.name, row)
        self.computed += len(shas)

    def close(self) -> None:
        self._arrays.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
