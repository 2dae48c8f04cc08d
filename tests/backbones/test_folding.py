"""Folding BatchNorms into convolutions: the same function, fewer layers, and only where it is exact."""

import numpy as np
import pytest

from auditor.backbones.folding import fold_batch_norms, foldable_pairs
from tests.keras_group import KERAS, lazy_module

keras = lazy_module("keras")
layers = lazy_module("keras.layers")
pytestmark = KERAS


def _randomise_batch_norms(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") if i != 3 else
                               rng.uniform(0.2, 2.0, w.shape).astype("float32")
                               for i, w in enumerate(layer.get_weights())])


def _model():
    x = inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="plain")(x)
    x = layers.BatchNormalization(name="bn_plain")(x)
    x = layers.ReLU()(x)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="depthwise")(x)
    x = layers.BatchNormalization(name="bn_depthwise", epsilon=1e-3)(x)
    branch = layers.Conv2D(16, 1, name="shared")(x)  # two consumers: folding one would change the other
    y = layers.BatchNormalization(name="bn_shared")(branch)
    z = layers.Conv2D(16, 1, activation="relu", name="activated")(x)  # an activation sits between
    z = layers.BatchNormalization(name="bn_activated")(z)
    w = layers.BatchNormalization(name="bn_of_sum", center=False)(layers.Add()([branch, y]))
    out = layers.Concatenate()([w, z])
    return keras.Model(inputs, layers.GlobalAveragePooling2D()(out))


def test_folds_what_is_exact_and_keeps_the_function():
    model = _model()
    _randomise_batch_norms(model)
    assert {bn: conv.name for bn, conv in foldable_pairs(model).items()} == {
        "bn_plain": "plain", "bn_depthwise": "depthwise"}
    folded = fold_batch_norms(model)
    names = {layer.name for layer in folded.layers}
    assert "bn_plain" not in names and "bn_depthwise" not in names
    assert {"bn_shared", "bn_activated", "bn_of_sum"} <= names
    x = np.random.default_rng(1).normal(size=(4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(folded.predict_on_batch(x)), np.asarray(model.predict_on_batch(x)),
                               rtol=1e-4, atol=1e-5)
    assert "bn_plain" in {layer.name for layer in model.layers}  # the model itself is untouched


def test_a_model_without_batch_norms_is_returned_as_is():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, layers.Conv2D(4, 3)(inputs))
    assert fold_batch_norms(model) is model


@pytest.mark.slow  # builds ResNet50 twice: seconds
def test_resnet50_is_built_with_all_53_batch_norms_folded():
    from auditor.backbones.resnet50 import build_resnet50

    model = build_resnet50(None)
    assert not any(isinstance(layer, layers.BatchNormalization) for inner in model.layers
                   for layer in getattr(inner, "layers", [inner]))
    reference = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(224, 224, 3))
    assert len(foldable_pairs(reference)) == sum(isinstance(layer, layers.BatchNormalization)
                                                 for layer in reference.layers) == 53

