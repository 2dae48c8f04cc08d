"""ResNet50 with Keras' ImageNet weights: no top, global average pooling, 2048-d, Keras' own preprocessing."""

from __future__ import annotations

from pathlib import Path

RESNET50_ID = "resnet50"
FEATURE_DIM = 2048
INPUT_SIZE = 224
WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + WEIGHTS_FILE
WEIGHTS_MD5 = "4d473c1dd8becc155b73f8504c6f6626"


def keras_models_dir() -> Path:
    """Where Keras caches downloaded weights (KERAS_HOME or ~/.keras, then models/)."""
    import os

    home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    return Path(home) / "models"


def cached_weights() -> Path | None:
    path = keras_models_dir() / WEIGHTS_FILE
    return path if path.is_file() and path.stat().st_size > 0 else None


CONNECT_TIMEOUT_S = 5.0  # name lookup + TCP connection, together
STALL_TIMEOUT_S = 20.0  # the longest wait for any one read once connected


def download_weights(connect_timeout_s: float = CONNECT_TIMEOUT_S, stall_timeout_s: float = STALL_TIMEOUT_S) -> Path:
    """Keras' own download of the ImageNet weights into its cache. Raises on any failure, within bounds.

    A network that drops packets instead of refusing them would otherwise hang: the name lookup ignores
    socket timeouts, so it and the connection are tried first in a daemon thread with a deadline, and
    every later read may stall at most `stall_timeout_s`. Keras' progress goes to stderr, not into the
    report on stdout; TensorFlow's start-up lines are silenced (keras_import)."""
    import contextlib
    import socket
    import sys

    from auditor.backbones.keras_import import import_keras

    host, port = _download_endpoint()
    check_reachable(host, port, connect_timeout_s)
    keras = import_keras()
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(stall_timeout_s)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return Path(
                keras.utils.get_file(WEIGHTS_FILE, WEIGHTS_URL, cache_subdir="models", file_hash=WEIGHTS_MD5)
            )
    finally:
        socket.setdefaulttimeout(previous)


def _download_endpoint() -> tuple[str, int]:
    """Where the download connects first: the HTTPS proxy urllib would use, else the weights' host."""
    from urllib.parse import urlparse
    from urllib.request import getproxies, proxy_bypass

    target = urlparse(WEIGHTS_URL)
    proxy = getproxies().get("https")
    if proxy and not proxy_bypass(target.hostname or ""):
        parsed = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        return parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    return target.hostname or "", target.port or 443


def check_reachable(host: str, port: int, timeout_s: float) -> None:
    """Raise unless `host` resolves and accepts a connection within `timeout_s` seconds in all."""
    import socket
    import threading

    outcome: dict[str, BaseException | bool] = {}

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            outcome["ok"] = True
        except OSError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=probe, name="auditor-download-probe", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    if "ok" not in outcome:  # still looking up or connecting: the daemon thread is simply abandoned
        raise TimeoutError(f"no answer from {host}:{port} within {timeout_s:.0f} s")


def build_resnet50(weights: Path | None, feature_maps: bool = False):
    """ResNet50 feature extractor taking RGB float pixels in 0..255, shape (N, 224, 224, 3).

    Keras' `preprocess_input` for ResNet50 ("caffe" mode: RGB→BGR, minus the ImageNet channel means) is
    applied inside the model with backend-neutral ops, so callers pass raw pixels on any backend.
    weights=None gives random weights (tests only; callers must ask for it explicitly).
    """
    import keras
    from keras import layers, ops

    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="pixels")
    bgr = layers.Lambda(lambda x: ops.flip(x, axis=-1), name="rgb_to_bgr")(inputs)
    centred = layers.Rescaling(1.0, offset=[-103.939, -116.779, -123.68], name="imagenet_mean")(bgr)
    from auditor.backbones.folding import fold_batch_norms

    # BatchNorms folded into the convolutions: the same function up to rounding, 4.4x faster in bfloat16 here.
    base = fold_batch_norms(keras.applications.ResNet50(
        include_top=False,
        weights=str(weights) if weights is not None else None,
        input_shape=(INPUT_SIZE, INPUT_SIZE, 3),
        pooling=None,
    ))
    maps = base(centred)
    pooled = layers.GlobalAveragePooling2D(name="avg_pool")(maps)
    return keras.Model(inputs, [pooled, maps] if feature_maps else pooled, name="resnet50_features")
