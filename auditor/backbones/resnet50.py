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


def download_weights(timeout_s: float = 60.0) -> Path:
    """Keras' own download of the ImageNet weights into its cache. Raises on any failure."""
    import socket

    import keras

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)  # a silent network should fail, not hang the audit
    try:
        return Path(
            keras.utils.get_file(WEIGHTS_FILE, WEIGHTS_URL, cache_subdir="models", file_hash=WEIGHTS_MD5)
        )
    finally:
        socket.setdefaulttimeout(previous)


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
    base = keras.applications.ResNet50(
        include_top=False,
        weights=str(weights) if weights is not None else None,
        input_shape=(INPUT_SIZE, INPUT_SIZE, 3),
        pooling=None,
    )
    maps = base(centred)
    pooled = layers.GlobalAveragePooling2D(name="avg_pool")(maps)
    return keras.Model(inputs, [pooled, maps] if feature_maps else pooled, name="resnet50_features")
