"""The backbones take uint8 pixels and cast them inside the graph: a batch crosses to an accelerator as bytes,
not as 4-byte floats the host converted first. The cast is exact, so the numbers are those of the float network."""

import numpy as np
import pytest

from auditor.backbones.registry import _load, packaged_efficientnet_weights


@pytest.mark.slow  # seconds: run by `make test`, not the edit-test loop
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_the_model_takes_bytes_and_embeds_as_the_float_network_does(precision):
    backbone = _load("efficientnet-lite0", packaged_efficientnet_weights(), "packaged", precision, "n")
    backbone.input_size, backbone.batch_shape = 64, 8
    images = np.random.default_rng(1).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    model = backbone.model
    assert str(model.inputs[0].dtype) == "uint8"
    float_network = model.layers[-1]  # the network the bytes are cast into, taking float32 pixels
    assert str(float_network.inputs[0].dtype) == "float32"
    expected = np.asarray(float_network.predict_on_batch(images.astype(np.float32)), dtype=np.float32)
    assert np.array_equal(backbone.embed(images), expected)
