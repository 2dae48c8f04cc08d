"""The LiteRT copy of the backbone that embeds float32 jobs on the CPU (and a merge gate without starting
TensorFlow): used only where it is the same network at float32, and its vectors equal the Keras model's within
rounding."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.backbones import lite
from auditor.backbones.registry import _load, packaged_efficientnet_weights

pytestmark = pytest.mark.skipif(not lite.runtime_available(), reason="ai-edge-litert is not installed here")


def sample_photos(count: int, size: int) -> np.ndarray:
    """Real photos from the repository's samples, squashed to size × size uint8 RGB."""
    from pathlib import Path

    from PIL import Image

    files = sorted((Path(__file__).resolve().parents[2] / "samples").rglob("*.jpg"))[:count]
    assert len(files) == count
    return np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
                     for f in files])


def backbone(precision: str = "float32", weights: bool = True, input_size: int = 64):
    made = _load("efficientnet-lite0", packaged_efficientnet_weights() if weights else None, "packaged", precision, "n")
    made.input_size = input_size
    return made


def test_a_copy_is_attached_only_to_a_float32_backbone_with_a_readable_copy(tmp_path):
    model = backbone()
    path = lite.copy_path(tmp_path, model.cache_key)
    assert not lite.attach_copy(model, tmp_path, 2)  # no copy yet
    assert lite.wants_copy(model, tmp_path) and not lite.wants_copy(model, None)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a model")
    assert not lite.attach_copy(model, tmp_path, 2) and model.lite is None  # unreadable: the Keras model embeds
    assert not lite.attach_copy(model, None, 2)  # no cache
    assert not lite.can_copy(backbone("bfloat16"))  # rounding LiteRT's float32 kernels would not reproduce
    assert not lite.use_copy(backbone("bfloat16"), tmp_path, 2)  # nor does the benches' shortcut make one
    assert not lite.can_copy(backbone(weights=False))  # random weights are drawn anew every run
    assert lite.copy_path(tmp_path, backbone("bfloat16").cache_key) != path  # keyed like the cached vectors
    assert lite.copy_path(tmp_path, backbone(input_size=96).cache_key) != path


def test_only_the_cpu_under_tensorflow_embeds_with_litert(monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert lite.applies(has_gpu=False) and not lite.applies(has_gpu=True)
    monkeypatch.setenv("KERAS_BACKEND", "jax")  # no TensorFlow converter there
    assert not lite.applies(has_gpu=False)


@pytest.mark.slow  # builds and converts the real network (≈ 10 s)
def test_the_copy_embeds_real_photos_as_the_keras_model_does(tmp_path):
    images = sample_photos(12, size=64)
    keras_side = backbone()
    expected = keras_side.embed(images)
    assert lite.wants_copy(keras_side, tmp_path)
    assert lite.keep_copy(keras_side, tmp_path) is None
    assert lite.copy_path(tmp_path, keras_side.cache_key).is_file() and not lite.wants_copy(keras_side, tmp_path)

    small_job = backbone()
    assert lite.attach_copy(small_job, tmp_path, 2) and not small_job.keras_built
    got = small_job.embed(images)
    assert not small_job.keras_built and small_job.describe()["runtime"] == "litert"
    cosine = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() > 0.99999
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    assert np.array_equal(small_job.embed(images[:3]), small_job.embed(images)[:3])  # alike in any batch
    bench_side = backbone()  # the benches' shortcut finds the copy made above and attaches it
    assert lite.use_copy(bench_side, tmp_path, 2) and np.array_equal(bench_side.embed(images), got)

    # A copy that cannot be loaded (cut short, another runtime's format) is made again, not left to slow every run.
    from types import SimpleNamespace

    from auditor.encoding.encode import _use_lite_copy
    from auditor.progress import SilentProgress

    path = lite.copy_path(tmp_path, keras_side.cache_key)
    path.write_bytes(path.read_bytes()[:1000])
    another_job, notes = backbone(), []
    _use_lite_copy(another_job, tmp_path, SimpleNamespace(devices=lambda: SimpleNamespace(gpus=0)), 2,
                   SilentProgress(), notes)
    assert another_job.lite is not None and not notes and path.stat().st_size > 1_000_000
    assert np.array_equal(another_job.embed(images), got)


def test_a_cache_folder_that_cannot_hold_the_copy_is_a_reason_not_an_error(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the copies' folder would go")
    why_not = lite.write_copy(object(), blocked / "lite-models" / "x.tflite")
    assert why_not is not None and "Error" in why_not
