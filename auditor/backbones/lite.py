"""A LiteRT copy of the backbone, for small embedding jobs: a merge gate's few new images.

Why: a gate that embeds 30 images spent most of its time starting TensorFlow (importing it ≈ 2–4.6 s, building
and tracing the model ≈ 1–1.5 s) — more than all of its own work. LiteRT (`ai-edge-litert`, TensorFlow Lite's
runtime on its own, with XNNPACK on the CPU) imports in ≈ 0.1 s and loads the same network in ≈ 0.1 s.

The copy is the backbone's own Keras graph (exported, then converted by TensorFlow's converter), written into the
cache the first time a float32 audit builds the Keras model, and keyed by the backbone's cache key (weights,
preprocessing, input size, precision), so it is only ever used for the embeddings it was made from. Only float32:
a bfloat16 network rounds its activations, which LiteRT's float32 kernels would not reproduce, and the cache
keeps the two precisions apart. Its vectors equal the Keras model's within float32 rounding (tested: cosine
≥ 0.99999 on real photos), far inside anything the checks decide on.

Jobs above LITE_MAX_IMAGES keep the Keras model: its throughput on many images is the measured one, and a
first audit that builds it anyway pays no extra start-up.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

LITE_MAX_IMAGES = 256  # embedding jobs up to this many images use the LiteRT copy, when one is cached
LITE_DIRECTORY = "lite-models"
LITE_PRECISIONS = ("float32",)


def runtime_available() -> bool:
    """Whether LiteRT's interpreter is installed (it has no wheels for some platforms, e.g. Windows)."""
    try:
        return importlib.util.find_spec("ai_edge_litert") is not None
    except (ImportError, ValueError):
        return False


def copy_path(cache_directory: Path, cache_key: str) -> Path:
    """Where the LiteRT copy of the backbone with this cache key lives in the cache."""
    return Path(cache_directory) / LITE_DIRECTORY / f"{hashlib.sha256(cache_key.encode()).hexdigest()[:32]}.tflite"


def can_copy(backbone: Any) -> bool:
    """Whether this backbone's embeddings can come from a LiteRT copy: float32, with weights (random weights are
    for tests and are drawn anew each run), and the runtime installed."""
    # getattr: the encoding stage takes any object that embeds (tests give it fakes without these fields)
    return (getattr(backbone, "precision", None) in LITE_PRECISIONS and getattr(backbone, "weights_path", None) is not None
            and hasattr(backbone, "lite") and runtime_available())


def write_copy(model: Any, path: Path) -> str | None:
    """Convert the built Keras model (uint8 pixels in, embeddings out) into a LiteRT file at `path`, atomically.
    None when written, else why not (the audit goes on without it: the copy only saves start-up time)."""
    from auditor.backbones.keras_import import quiet_native_stderr

    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".lite-", dir=path.parent))
    try:
        with quiet_native_stderr():
            import tensorflow as tf
            from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

            # The model traced once for any batch of its input, its weights frozen into the graph, then converted:
            # 1.7 s for EfficientNet-Lite0 at 224 px here (exporting a SavedModel and converting that took 5.5 s).
            traced = tf.function(lambda pixels: model(pixels, training=False)).get_concrete_function(
                tf.TensorSpec([None, *model.input_shape[1:]], tf.uint8))
            frozen = convert_variables_to_constants_v2(traced)
            converted = tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert()
        partial = work / "model.tflite"
        partial.write_bytes(converted)
        os.replace(partial, path)
        return None
    except Exception as exc:  # a converter that cannot take this graph: no copy, nothing else changes
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    finally:
        shutil.rmtree(work, ignore_errors=True)


class LiteModel:
    """The LiteRT interpreter of a copy: embed(uint8 (N, S, S, 3)) → float32 (N, dim)."""

    def __init__(self, path: Path, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        from auditor.backbones.keras_import import quiet_native_stderr

        with quiet_native_stderr():  # the runtime announces its CPU delegate on file descriptor 2
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count() or 1)
        self._input = self.interpreter.get_input_details()[0]["index"]
        self._output = self.interpreter.get_output_details()[0]["index"]
        self._shape: tuple[int, ...] | None = None

    def embed(self, batch: np.ndarray) -> np.ndarray:
        from auditor.backbones.keras_import import quiet_native_stderr

        batch = np.ascontiguousarray(batch, dtype=np.uint8)
        if self._shape != batch.shape:
            with quiet_native_stderr():
                self.interpreter.resize_tensor_input(self._input, batch.shape)
                self.interpreter.allocate_tensors()
            self._shape = batch.shape
        self.interpreter.set_tensor(self._input, batch)
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self._output), dtype=np.float32)


def attach_copy(backbone: Any, cache_directory: Path | None, images: int, threads: int) -> bool:
    """Give `backbone` its cached LiteRT copy for a job of `images` new embeddings, when the job is small and a
    copy exists; True when attached. A copy that cannot be loaded is skipped (the Keras model embeds)."""
    if cache_directory is None or not 0 < images <= LITE_MAX_IMAGES or not can_copy(backbone):
        return False
    path = copy_path(cache_directory, backbone.cache_key)
    if not path.is_file():
        return False
    try:
        backbone.lite = LiteModel(path, threads)
    except Exception:  # a truncated or foreign file: the Keras model is always there
        return False
    return True


def wants_copy(backbone: Any, cache_directory: Path | None) -> bool:
    """Whether a job that built the Keras model should leave its LiteRT copy in the cache: once per cache key."""
    if cache_directory is None or not can_copy(backbone) or backbone.lite is not None or not backbone.keras_built:
        return False
    return not copy_path(cache_directory, backbone.cache_key).is_file()


def keep_copy(backbone: Any, cache_directory: Path | None) -> str | None:
    """Write the LiteRT copy `wants_copy` asks for. None when there was nothing to do or it was written; else why
    it was not."""
    if not wants_copy(backbone, cache_directory):
        return None
    return write_copy(backbone.model, copy_path(cache_directory, backbone.cache_key))
