"""The Ray engine: the read → decode → embed map as Ray Data `map_batches` over an actor pool, on a local
Ray or a cluster (RAY_ADDRESS), GPU actors where the cluster has GPUs. `pip install 'auditor[ray]'`.

On CPUs one actor per CPU reads, decodes and embeds its batch (one model per actor, one thread each, so
the pool fills the cluster without oversubscribing a core). With GPUs decoding runs as Ray tasks on every
CPU of the cluster and one actor per GPU only embeds: a GPU embeds images far faster than one core
decodes them. What the actors return is iterated on the driver, which stores it in the same
content-keyed cache as the local engine — everything after the embedding is unchanged.

Each actor builds its own model from the weights the driver ships through the object store (once per
run), so nodes need auditor and its dependencies installed but not the weights. Hashing stays on the
driver for local paths (which the nodes must see at the same path: shared storage); files named by
fsspec URL (s3://, gs://, file://) are hashed by a Ray map too, where the bytes are.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from auditor.encoding.imaging import ImageScan, Problem, ScanLimits, sha256_hex
from auditor.engines import DecodeJob, EncodedBatch
from auditor.engines.device import (CPU_ONLY, Devices, backend_can_use_gpus, cluster_devices, has_amx_bf16,
                                    local_devices)
from auditor.engines.local import decode_or_why
from auditor.engines.urls import check_protocols, read_source
from auditor.errors import AuditorError, ConfigError

INSTALL_TIP = "Install the extra: pip install 'auditor[ray]' (Ray Data and fsspec), or use --engine local."
NODE_PATHS_TIP = ("Ray workers read the dataset at the same paths as the driver: put it on storage every node "
                  "mounts at that path, or list the files as URLs (s3://, gs://) in a manifest.")
# Per CPU actor: one core, one thread in the model, so N actors on N cores do not fight over them.
ACTOR_THREAD_ENV = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1",
                    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


def import_ray():
    """Ray with Ray Data, or a one-line error with the install tip."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"--engine ray needs Ray Data, which is not installed here ({exc})", INSTALL_TIP) from None
    return ray


class RayEngine:
    """`address`: a Ray cluster (default: $RAY_ADDRESS; neither, or "local": a local Ray with `workers` CPUs).
    `cpus_per_actor`: cores each CPU actor uses. `decode_apart`: decode in Ray tasks and embed in an
    actor pool of its own (always so with GPUs; settable to exercise that path on CPUs)."""

    def __init__(self, workers: int = 2, address: str | None = None, cpus_per_actor: int = 1,
                 decode_apart: bool | None = None):
        self.workers = workers
        self.address = (address if address is not None else os.environ.get("RAY_ADDRESS")) or "local"
        self.cpus_per_actor = cpus_per_actor
        self.decode_apart = decode_apart
        self._devices: Devices | None = None

    # -- what the run will use -------------------------------------------------------------------
    def pool(self, embeds: bool):
        """Where per-image work after the encode phase runs (the calibration copies): threads on the driver."""
        from auditor.engines.local import WorkerPool

        return WorkerPool(self.workers)

    def devices(self) -> Devices:
        """The cluster's GPUs (connecting to it), or this machine's for a local Ray."""
        if self._devices is None:
            if self.address == "local" and not _ray_initialized():  # a local Ray: the actors run here
                found = local_devices()
                self._devices = found if found.gpus and backend_can_use_gpus() else CPU_ONLY
            else:
                with self.session() as ray:
                    found = cluster_devices(ray.cluster_resources())
                    if not found.gpus:  # CPUs embed: their AMX, not the driver's, decides `--precision auto`
                        found = replace(found, cpu_bfloat16=nodes_have_amx_bf16(ray))
                    self._devices = found
        return self._devices

    @contextmanager
    def session(self):
        """Ray, connected: to the session already open in this process, to `address`, or to a local Ray
        started here (and shut down here — never one this engine did not start)."""
        ray = import_ray()
        started = False
        if not ray.is_initialized():
            from auditor.backbones.keras_import import quiet_native_stderr

            _check_reachable(self.address)
            _quiet_ray_env()
            try:
                with quiet_native_stderr():  # Ray's C++ core announces its log level on stderr while starting
                    if self.address == "local":
                        ray.init(address="local", num_cpus=self.workers, **_quiet_init_args())
                    else:
                        ray.init(address=self.address, **_quiet_init_args())
            except Exception as exc:  # Ray raises many types here (ConnectionError, RuntimeError, ValueError)
                reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
                if self.address == "local":
                    raise ConfigError(f"cannot start a local Ray: {reason}",
                                      "Check free memory and /tmp space, or use --engine local.") from None
                raise ConfigError(f"cannot connect to the Ray cluster at {self.address}: {reason}",
                                  "Check RAY_ADDRESS (e.g. ray://head:10001, or auto on a cluster node).") from None
            started = True
        _quiet_ray_data()
        try:
            yield ray
        finally:
            if started:
                ray.shutdown()

    # -- the engine interface --------------------------------------------------------------------
    def run(self, jobs: list[DecodeJob], backbone, limits: ScanLimits, max_file_bytes: int, batch_size: int,
            want_maps: bool) -> Iterator[EncodedBatch]:
        if not jobs:
            return
        check_protocols([job.path for job in jobs])
        with self.session() as ray:
            resources = ray.cluster_resources()
            devices = self._devices if self._devices is not None else cluster_devices(resources)
            dataset = ray.data.from_items([_job_row(job) for job in jobs])
            embed_size = backbone.input_size if backbone is not None else None
            decode_kwargs = dict(limits=limits, max_file_bytes=max_file_bytes, embed_size=embed_size)
            env = _actor_env()
            if backbone is None:
                mapped = dataset.map_batches(decode_rows, fn_kwargs=decode_kwargs, batch_size=batch_size,
                                             num_cpus=1, runtime_env={"env_vars": env})
            else:
                shipped = ship_backbone(ray, backbone)
                apart = devices.gpus > 0 if self.decode_apart is None else self.decode_apart
                if apart:
                    gpus = min(devices.gpus, int(resources.get("GPU", 0)))  # never wait for GPUs Ray lacks
                    decoded = dataset.map_batches(decode_rows, fn_kwargs=decode_kwargs, batch_size=batch_size,
                                                  num_cpus=1, runtime_env={"env_vars": env})
                    actors = gpus or max(1, int(resources.get("CPU", 1)) // self.cpus_per_actor - 1)
                    mapped = decoded.map_batches(
                        Embed, fn_constructor_kwargs=dict(shipped=shipped, want_maps=want_maps, batch_size=batch_size),
                        batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=1 if gpus else 0,
                        num_cpus=1 if gpus else self.cpus_per_actor,
                        runtime_env={"env_vars": env if gpus else {**env, **_thread_env(self.cpus_per_actor)}})
                else:
                    actors = max(1, int(resources.get("CPU", 1)) // self.cpus_per_actor)
                    mapped = dataset.map_batches(
                        DecodeEmbed, fn_constructor_kwargs=dict(shipped=shipped, want_maps=want_maps,
                                                                batch_size=batch_size, decode_kwargs=decode_kwargs),
                        batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=self.cpus_per_actor,
                        runtime_env={"env_vars": {**env, **_thread_env(self.cpus_per_actor)}})
            yield from collect(mapped.iter_batches(batch_size=batch_size, batch_format="numpy"))

    def hash_urls(self, urls: list[str], max_file_bytes: int) -> Iterator[tuple[int, str | None, Problem | None]]:
        """(position in `urls`, sha256 or None, read problem or None) for files named by URL, read and
        hashed by Ray tasks where the bytes are (the driver never downloads them)."""
        if not urls:
            return
        check_protocols(urls)
        with self.session() as ray:
            rows = [{"position": i, "path": url} for i, url in enumerate(urls)]
            hashed = ray.data.from_items(rows).map_batches(hash_rows, fn_kwargs=dict(max_file_bytes=max_file_bytes),
                                                           batch_size=64, num_cpus=1,
                                                           runtime_env={"env_vars": _actor_env()})
            for batch in hashed.iter_batches(batch_size=256, batch_format="numpy"):
                for position, sha, problem in zip(batch["position"], batch["sha"], batch["problem"]):
                    yield int(position), (str(sha) or None), (Problem(**json.loads(problem)) if problem else None)


# -- what runs on the cluster ---------------------------------------------------------------------

def decode_rows(rows: dict[str, np.ndarray], limits: ScanLimits, max_file_bytes: int,
                embed_size: int | None) -> dict[str, Any]:
    """Read and decode a batch of jobs: each one's scan (as JSON), its pixels at the backbone's size when
    wanted, and why nothing came back ("" when something did)."""
    out: dict[str, list] = {"sha": [], "scan": [], "why": [], "unreadable": [], "has_pixels": [], "pixels": []}
    blank = np.zeros((embed_size, embed_size, 3), np.uint8) if embed_size else None
    for sha, path, want_scan, want_pixels in zip(rows["sha"], rows["path"], rows["want_scan"], rows["want_pixels"]):
        job = DecodeJob(sha=str(sha), path=str(path), want_scan=bool(want_scan), want_pixels=bool(want_pixels))
        scan, array, why = decode_or_why(job, limits, max_file_bytes, embed_size, read=read_source)
        out["sha"].append(job.sha)
        out["scan"].append(json.dumps(scan.to_json()) if scan is not None and job.want_scan else "")
        out["why"].append(why or "")
        out["unreadable"].append(why is not None and why != "changed")
        out["has_pixels"].append(array is not None)
        out["pixels"].append(array if array is not None else blank)
    columns: dict[str, Any] = {key: np.array(out[key]) for key in ("sha", "scan", "why", "unreadable", "has_pixels")}
    if embed_size:
        columns["pixels"] = np.stack(out["pixels"]) if out["pixels"] else np.zeros((0, embed_size, embed_size, 3), np.uint8)
    return columns


class Embed:
    """An actor holding one model: embeds the decoded pixels of each batch."""

    def __init__(self, shipped: dict[str, Any], want_maps: bool, batch_size: int):
        self.backbone = receive_backbone(shipped, batch_size)
        self.want_maps = want_maps
        self.map_shape: tuple[int, ...] | None = None
        if want_maps:  # build now, and learn the maps' shape so batches without images have the same columns
            size = self.backbone.input_size
            self.map_shape = self.backbone.embed_with_maps(np.zeros((1, size, size, 3), np.uint8))[1].shape[1:]
        else:
            self.backbone.model  # noqa: B018  (build the model before the first batch arrives)

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, Any]:
        return self.embed(rows, time.process_time())

    def embed(self, rows: dict[str, np.ndarray], cpu_started: float) -> dict[str, Any]:
        count = len(rows["sha"])
        has_pixels = np.asarray(rows["has_pixels"], bool)
        vectors = np.zeros((count, self.backbone.dim), np.float32)
        maps = np.zeros((count, *self.map_shape), np.float16) if self.want_maps else None
        inference = np.zeros(count, np.float64)
        if has_pixels.any():
            pixels = np.asarray(rows["pixels"])[has_pixels]
            started = time.perf_counter()
            if self.want_maps:
                vectors[has_pixels], maps[has_pixels] = self.backbone.embed_with_maps(pixels)
            else:
                vectors[has_pixels] = self.backbone.embed(pixels)
            inference[has_pixels] = (time.perf_counter() - started) / int(has_pixels.sum())
        out = {key: rows[key] for key in ("sha", "scan", "why", "unreadable", "has_pixels")}
        out.update(vector=vectors, inference_s=inference,
                   cpu_s=np.full(count, (time.process_time() - cpu_started) / max(count, 1)))
        if maps is not None:
            out["maps"] = maps
        return out


class DecodeEmbed(Embed):
    """An actor that reads, decodes and embeds its batch (CPU clusters: no pixels cross the network)."""

    def __init__(self, shipped: dict[str, Any], want_maps: bool, batch_size: int, decode_kwargs: dict[str, Any]):
        super().__init__(shipped, want_maps, batch_size)
        self.decode_kwargs = decode_kwargs

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, Any]:
        cpu_started = time.process_time()
        return self.embed(decode_rows(rows, **self.decode_kwargs), cpu_started)


def hash_rows(rows: dict[str, np.ndarray], max_file_bytes: int) -> dict[str, np.ndarray]:
    shas, problems = [], []
    for path in rows["path"]:
        data, problem = read_source(str(path), max_file_bytes)
        shas.append(sha256_hex(data) if data is not None else "")
        problems.append(json.dumps(asdict(problem)) if problem is not None else "")
    return {"position": rows["position"], "sha": np.array(shas), "problem": np.array(problems)}


# -- the driver's side --------------------------------------------------------------------------

def collect(batches: Iterator[dict[str, np.ndarray]]) -> Iterator[EncodedBatch]:
    """EncodedBatches from the map's output. Stops with a one-line error when the workers can read none
    of the files the driver hashed (they do not see its paths); a few unreadable files are left for the
    next run, as the local engine leaves files that changed since they were hashed."""
    readable = 0
    for rows in batches:
        unreadable = np.asarray(rows["unreadable"], bool)
        readable += int((~unreadable).sum())
        if unreadable.any() and readable == 0:
            first = int(np.flatnonzero(unreadable)[0])
            raise AuditorError(f"a Ray worker cannot read the dataset's files ({rows['why'][first]})", NODE_PATHS_TIP)
        batch = EncodedBatch(done=[str(sha) for sha in rows["sha"]],
                             scans=[ImageScan.from_json(json.loads(text)) for text in rows["scan"] if text])
        if "vector" in rows:
            embedded = np.asarray(rows["has_pixels"], bool)
            if embedded.any():
                batch.shas = [str(sha) for sha in np.asarray(rows["sha"])[embedded]]
                batch.vectors = np.ascontiguousarray(rows["vector"][embedded], dtype=np.float32)
                if "maps" in rows:
                    batch.maps = np.ascontiguousarray(rows["maps"][embedded], dtype=np.float16)
                batch.inference_s = float(np.sum(rows["inference_s"]))
        if "cpu_s" in rows:
            batch.worker_cpu_s = float(np.sum(rows["cpu_s"]))
        yield batch


def nodes_have_amx_bf16(ray, timeout_s: float = 60.0) -> bool | None:
    """Whether every alive node of the cluster has AMX for bfloat16: one task pinned to each node reads its
    /proc/cpuinfo. None (the driver's own CPU decides, as before) where the nodes cannot be asked in time."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(has_amx_bf16)
    try:
        nodes = [node["NodeID"] for node in ray.nodes() if node.get("Alive")]
        answers = ray.get([probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote()
                           for node in nodes], timeout=timeout_s)
    except Exception:  # a node that does not answer must not stop the audit (the report names the precision run)
        return None
    return bool(answers) and all(answers)


def ship_backbone(ray, backbone) -> dict[str, Any]:
    """The backbone without its built model or LiteRT copy (each actor builds its own Keras model), and its weights
    file in the object store, so nodes need not have the weights at the driver's path."""
    shipped: dict[str, Any] = {"backbone": replace(backbone, _model=None, _maps_model=None, lite=None)}
    if backbone.weights_path is not None:
        data = Path(backbone.weights_path).read_bytes()
        shipped.update(weights_sha=hashlib.sha256(data).hexdigest(), weights_suffix=Path(backbone.weights_path).suffix,
                       weights=[ray.put(data)])  # in a list: the actor fetches it only when it lacks the file
    return shipped


def receive_backbone(shipped: dict[str, Any], batch_size: int):
    """The shipped backbone, pointing at a local copy of its weights (the driver's path when this node has
    the same file there, else a copy written once per node from the object store)."""
    backbone = replace(shipped["backbone"], batch_shape=batch_size)
    if backbone.weights_path is None:
        return backbone
    local = Path(backbone.weights_path)
    if not (local.is_file() and _sha256_file(local) == shipped["weights_sha"]):
        local = Path(tempfile.gettempdir()) / "auditor-weights" / f"{shipped['weights_sha']}{shipped['weights_suffix']}"
        if not local.is_file():
            import ray

            local.parent.mkdir(parents=True, exist_ok=True)
            partial = local.with_name(f"{local.name}.{os.getpid()}.part")
            partial.write_bytes(ray.get(shipped["weights"][0]))
            os.replace(partial, local)
    return replace(backbone, weights_path=local)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _job_row(job: DecodeJob) -> dict[str, Any]:
    return {"sha": job.sha, "path": str(job.path), "want_scan": job.want_scan, "want_pixels": job.want_pixels}


def _actor_env() -> dict[str, str]:
    """The driver's backend choice and quiet native logs, for processes on other nodes."""
    return {"KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "tensorflow"),
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}


def _thread_env(cpus: int) -> dict[str, str]:
    if cpus == 1:
        return dict(ACTOR_THREAD_ENV)
    return {"TF_NUM_INTRAOP_THREADS": str(cpus), "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": str(cpus)}


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail in seconds, not minutes, when a host:port cluster address does not answer: Ray itself retries
    connecting to an unreachable address for about ten minutes, silently."""
    import socket

    target = address.split("://", 1)[-1].strip("/")
    host, _, port = target.rpartition(":")
    if address == "local" or address == "auto" or not host or not port.isdigit():
        return  # "auto" finds a cluster on this node, or fails at once by itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}",
                          "Check RAY_ADDRESS: host:port of the head's GCS (6379 by default), ray://host:10001 for "
                          "Ray Client, or auto on a node of the cluster.") from None


def _ray_initialized() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized()


def _quiet_ray_env() -> None:
    # Ray's C++ core logs to the driver's stderr (e.g. an "E" line about actor constructor arguments for
    # every actor pool, which is harmless: the driver keeps those arguments alive for the whole run);
    # auditor's stderr carries progress and errors only. Failures still arrive as Python exceptions, and a
    # RAY_BACKEND_LOG_LEVEL set by the user wins.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")


def _quiet_init_args() -> dict[str, Any]:
    return dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                configure_logging=True)


def _quiet_ray_data() -> None:
    """No Ray Data progress bars or execution banners (auditor shows its own progress)."""
    import ray.data
    from ray.util.debug import log_once

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    log_once("ray_data_progress_manager_disabled")  # consumes the one-time "progress bars disabled" warning
    logging.getLogger("ray.data").setLevel(logging.WARNING)
