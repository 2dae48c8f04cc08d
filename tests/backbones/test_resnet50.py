"""ResNet50: Keras' own preprocessing inside the model, weights from a path or Keras' cache."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.backbones import resnet50
from auditor.backbones.registry import resolve_backbone
from auditor.errors import BackboneError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference_model():
    import keras

    keras.utils.set_random_seed(7)
    return keras.applications.ResNet50(include_top=False, weights=None, input_shape=(224, 224, 3), pooling="avg")


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)


def _legacy_h5(model, path):
    """Write weights in the legacy HDF5 layout that Keras' published ResNet50 file uses."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)
    return path


def test_weights_path_loads_and_preprocessing_matches_keras(tmp_path, reference_model, pixels):
    import keras

    weights = reference_model.save_weights(tmp_path / "mine.weights.h5") or tmp_path / "mine.weights.h5"
    backbone = resolve_backbone("resnet50", str(weights), offline=True, precision="float32")
    ours = backbone.embed(pixels)
    expected = reference_model.predict_on_batch(keras.applications.resnet50.preprocess_input(pixels.astype("float32")))
    assert ours.shape == (3, 2048)
    np.testing.assert_allclose(ours, np.asarray(expected), rtol=1e-3, atol=1e-3)
    assert backbone.name == "resnet50" and "mine.weights.h5" in backbone.weights


def test_auto_uses_weights_cached_by_keras(tmp_path, monkeypatch, reference_model, pixels):
    import keras

    models = tmp_path / "keras-home" / "models"
    models.mkdir(parents=True)
    _legacy_h5(reference_model, models / resnet50.WEIGHTS_FILE)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    backbone = resolve_backbone("auto", None, offline=True, precision="float32")
    assert backbone.name == "resnet50"
    assert backbone.weights == "cached by Keras"
    expected = reference_model.predict_on_batch(keras.applications.resnet50.preprocess_input(pixels.astype("float32")))
    np.testing.assert_allclose(backbone.embed(pixels), np.asarray(expected), rtol=1e-3, atol=1e-3)


def test_forced_resnet50_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    with pytest.raises(BackboneError) as info:
        resolve_backbone("resnet50", None, offline=True, precision="float32")
    assert "--weights PATH" in info.value.tip and "efficientnet-lite0" in info.value.tip


def test_a_download_failure_falls_back_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))

    def refuse(*_args, **_kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(resnet50, "download_weights", refuse)
    backbone = resolve_backbone("auto", None, offline=False, precision="float32")
    assert backbone.name == "efficientnet-lite0"
    assert "network unreachable" in backbone.note and "ResNet50" in backbone.note


def test_random_weights_only_when_asked():
    backbone = resolve_backbone("resnet50", "none", offline=True, precision="float32")
    assert backbone.weights == "random" and "tests only" in backbone.note
    assert "random" in backbone.cache_key


def test_a_wrong_weights_file_is_a_backbone_error(tmp_path, pixels):
    bogus = tmp_path / "bogus.h5"
    bogus.write_bytes(b"not hdf5 at all")
    backbone = resolve_backbone("resnet50", str(bogus), offline=True, precision="float32")
    with pytest.raises(BackboneError):
        backbone.embed(pixels)
