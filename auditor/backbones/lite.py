"""A LiteRT copy of the backbone: what embeds every float32 job on the CPU.

Why: LiteRT (`ai-edge-litert`, TensorFlow Lite's runtime on its own, with XNNPACK's CPU kernels) runs the same
network faster than Keras on TensorFlow here — EfficientNet-Lite0 2.1× at 224 px and 1.8× at 96 px, ResNet50
1.2× (bench/bench_lite.py, one run on 2 cores) — and reaches its first embedding in 0.03–0.2 s, where importing
TensorFlow and building and calling the Keras model took 6.1–8.7 s: most of a merge gate that embeds 30 new images.

The copy is the backbone's own Keras graph, traced for any batch, its weights frozen, converted by TensorFlow's
converter, and kept in the cache (`lite-models/`) keyed by the backbone's cache key (weights, preprocessing,
input size, precision), so it only ever stands in for the model it was made from. The first job with a cache
builds the Keras model once to convert it (1.8 s for EfficientNet-Lite0, 7.4 s for ResNet50, on top of building);
later jobs never import TensorFlow. Only float32: a bfloat16 network rounds its activations, which LiteRT's float32
kernels would not reproduce, and the cache keeps the two precisions apart. Only on the CPU, with Keras on its
TensorFlow backend (the converter is TensorFlow's; a GPU embeds faster than the CPU). Its vectors equal the Keras
model's within float32 rounding (real photos: cosine ≥ 0.99999 tested, 0.9999999 measured), far inside anything
the checks decide on. Feature maps (the fine-tune's input) still come from the Keras model.
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
    return (getattr(backbone, "precision", None) in LITE_PRECISIONS
            and getattr(backbone, "weights_path", None) is not None
            and hasattr(backbone, "lite") and runtime_available())


def write_copy(model: Any, path: Path) -> str | None:
    """Convert the built Keras model (uint8 pixels in, embeddings out) into a LiteRT file at `path`, atomically.
    None when written, else why not (the audit goes on without it, embedding with the Keras model)."""
    from auditor.backbones.keras_import import quiet_native_stderr

    work = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".lite-", dir=path.parent))
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
        if work is not None:
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


def applies(has_gpu: bool) -> bool:
    """Whether this process embeds with LiteRT at all: on the CPU, with Keras on TensorFlow (whose converter makes
    the copy), where the runtime is installed."""
    return not has_gpu and os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow" and runtime_available()


def attach_copy(backbone: Any, cache_directory: Path | None, threads: int) -> bool:
    """Give `backbone` its cached LiteRT copy, when one exists; True when attached. A copy that cannot be loaded is
    skipped (the Keras model embeds)."""
    if cache_directory is None or not can_copy(backbone):
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
    """Whether the cache should get this backbone's LiteRT copy: it can have one and has none yet."""
    if cache_directory is None or not can_copy(backbone) or backbone.lite is not None:
        return False
    return not copy_path(cache_directory, backbone.cache_key).is_file()


def keep_copy(backbone: Any, cache_directory: Path | None) -> str | None:
    """Build the Keras model and write the LiteRT copy `wants_copy` asks for. None when there was nothing to do or
    it was written; else why it was not."""
    if not wants_copy(backbone, cache_directory):
        return None
    return write_copy(backbone.model, copy_path(cache_directory, backbone.cache_key))


def use_copy(backbone: Any, cache_directory: Path, threads: int) -> bool:
    """Make (or find) the copy in `cache_directory` and attach it: True when `backbone` now embeds with LiteRT.
    For measuring the runtime itself (the benches); an audit goes through `encoding.encode`, which also retries
    a copy it cannot load and says in the report why Keras embedded instead."""
    return keep_copy(backbone, cache_directory) is None and attach_copy(backbone, cache_directory, threads)


def discard_copy(backbone: Any, cache_directory: Path | None) -> None:
    """Remove this backbone's copy from the cache (one that cannot be loaded), so that it is made again."""
    if cache_directory is not None:
        copy_path(cache_directory, backbone.cache_key).unlink(missing_ok=True)
