"""Where the expensive map runs — read, decode, embed each image the cache lacks. The local engine uses
threads for decoding and the main thread for the backbone; other engines (a Ray cluster) run the same
map elsewhere. Either way the driver stores what comes back in the same content-keyed cache.

An engine is any object with

    run(jobs: list[DecodeJob], backbone, limits, max_file_bytes, batch_size, want_maps) -> Iterator[EncodedBatch]

yielding every job exactly once (in any order), each batch at most `batch_size` embedded images, and

    devices() -> Devices   (engines/device.py: the GPUs the map would run on, for batch size and precision `auto`)
    pool(embeds) -> WorkerPool   (engines/local.py: where per-image work after the map runs, on this machine)

An engine that can read files named by URL where their bytes are also has
`hash_urls(urls, max_file_bytes) -> Iterator[(position, sha | None, Problem | None)]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from auditor.encoding.imaging import ImageScan


@dataclass(frozen=True)
class DecodeJob:
    sha: str  # the content hash read in the hashing pass; a file that no longer hashes to it is skipped
    path: Path | str  # a local path (or, for engines that read remotely, a URL)
    want_scan: bool  # the cache has no scan of this content
    want_pixels: bool  # the cache lacks its embedding (or feature maps): decode at the backbone's size


@dataclass
class EncodedBatch:
    scans: list[ImageScan] = field(default_factory=list)  # new scans (jobs that wanted one)
    done: list[str] = field(default_factory=list)  # every job sha this batch settles (scanned, embedded or skipped)
    unstable: list[str] = field(default_factory=list)  # jobs whose file changed or vanished since it was hashed
    shas: list[str] = field(default_factory=list)  # embedded contents, aligned with vectors (and maps)
    vectors: np.ndarray | None = None  # float32 (N, dim)
    maps: np.ndarray | None = None  # float16 (N, H, W, C), only when asked for
    inference_s: float = 0.0
    worker_cpu_s: float = 0.0  # CPU time the engine's workers spent on this batch, where it measures it (Ray)


def resolve_engine(name: str, workers: int):
    """The engine a run asked for: "local" (threads) or "ray" (Ray Data, `pip install auditor[ray]`).
    Creating either is cheap: the Ray engine connects to Ray only when it has work (or is asked which
    devices it has)."""
    if name == "local":
        from auditor.engines.local import LocalEngine

        return LocalEngine(workers)
    if name == "ray":
        import importlib.util

        from auditor.engines.ray_engine import INSTALL_TIP, RayEngine

        if importlib.util.find_spec("ray") is None:  # fail now, in one line (without paying for importing Ray)
            from auditor.errors import ConfigError

            raise ConfigError("--engine ray needs Ray Data, which is not installed here", INSTALL_TIP)
        return RayEngine(workers)
    from auditor.errors import ConfigError

    raise ConfigError(f"unknown engine {name!r}", "Use --engine local or --engine ray.")
