"""Fold each BatchNormalization into the convolution before it, for inference (backend-neutral Keras 3).

At inference a BatchNorm is a per-channel affine map, y = γ (x − μ) / √(σ² + ε) + β, so a convolution followed
only by it is one convolution with kernel × s and bias (b − μ)·s + β, s = γ / √(σ² + ε). Inference engines run
such networks folded. Here it matters more than usual: Keras' BatchNorm in mixed bfloat16 on these CPUs cost
more than the convolutions (ResNet50, 32 photos at 224 px, 2 cores: 0.741 s unfolded, 0.183 s folded;
bench/bench_folding.py).

EfficientNet-Lite0 is built folded from its weights file (efficientnet_lite0.fold_batch_norms, cheaper than a
second graph); this module folds a graph we do not own, such as keras.applications.ResNet50, by cloning it with
keras.models.clone_model: the convolutions gain a bias, the folded BatchNorms are skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def fold_batch_norms(model: Any) -> Any:
    """A copy of the functional `model` with every foldable BatchNorm folded (see foldable_pairs); the same
    function up to rounding. The model itself is left as it is. A model with nothing to fold is returned as is."""
    import keras

    pairs = foldable_pairs(model)
    if not pairs:
        return model
    convolutions = {conv.name: batch_norm for batch_norm, conv in pairs.items()}

    def clone(layer):
        config = layer.get_config()
        if layer.name in convolutions:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    def call(layer, *args, **kwargs):
        return args[0] if layer.name in pairs else layer(*args, **kwargs)

    folded = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for layer in folded.layers:
        if layer.name in convolutions:
            conv = model.get_layer(layer.name)
            layer.set_weights(folded_weights(conv, model.get_layer(convolutions[layer.name])))
        elif layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return folded


def foldable_pairs(model: Any) -> dict[str, Any]:
    """BatchNorm name → the Conv2D or DepthwiseConv2D it follows, where folding is exact: the BatchNorm
    normalises the channels (last axis) of a convolution without activation whose only consumer it is."""
    from keras import layers

    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, layers.BatchNormalization) or len(layer._inbound_nodes) != 1:
            continue
        parents = layer._inbound_nodes[0].parent_nodes
        source = parents[0].operation if len(parents) == 1 else None
        if (isinstance(source, (layers.Conv2D, layers.DepthwiseConv2D))
                and source.get_config().get("activation") == "linear"
                and len(source._outbound_nodes) == 1 and len(source._inbound_nodes) == 1
                and layer.axis in (-1, len(layer.input.shape) - 1)):
            pairs[layer.name] = source
    return pairs


def batch_norm_as_affine(gamma, beta, mean, variance, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """(s, t) with BatchNorm(x) = s·x + t per channel at inference: s = γ / √(σ² + ε), t = β − μ·s (float64).
    A convolution with kernel K and bias b followed by it is the convolution with K·s (per output channel) and
    b·s + t. Shared by both folds (the weights-file one of EfficientNet-Lite0 and the graph one here)."""
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(variance, np.float64) + epsilon)
    return scale, np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale


def folded_weights(conv: Any, batch_norm: Any) -> list[np.ndarray]:
    """[kernel, bias] of `conv` with `batch_norm` folded in (float64 arithmetic, float32 result)."""
    from keras import layers

    weights = [np.asarray(w, np.float64) for w in conv.get_weights()]
    kernel, bias = weights[0], (weights[1] if len(weights) > 1 else 0.0)
    channels = int(batch_norm.moving_mean.shape[0])
    gamma = np.asarray(batch_norm.gamma) if batch_norm.scale else np.ones(channels)
    beta = np.asarray(batch_norm.beta) if batch_norm.center else np.zeros(channels)
    scale, shift = batch_norm_as_affine(gamma, beta, batch_norm.moving_mean, batch_norm.moving_variance,
                                        batch_norm.epsilon)
    if isinstance(conv, layers.DepthwiseConv2D):  # (kh, kw, in, multiplier): output channel = in × multiplier + m
        folded = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:  # (kh, kw, in / groups, out)
        folded = kernel * scale
    return [folded.astype(np.float32), (bias * scale + shift).astype(np.float32)]
