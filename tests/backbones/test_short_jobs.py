"""A merge gate embeds a few new images in one short (padded) batch; the first audit embedded the existing ones in
full batches. An image's embedding must not depend on which batch it came in, bit for bit, or the gate's new
images and the cached ones would not be comparable exactly (a copy of an existing image must embed as it)."""

import numpy as np
import pytest

from auditor.backbones.registry import _load, packaged_efficientnet_weights


@pytest.mark.slow  # seconds: run by `make test`, not the edit-test loop
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_an_image_embeds_alike_in_a_short_batch_and_a_full_one(precision):
    weights = packaged_efficientnet_weights()
    images = np.random.default_rng(0).integers(0, 256, (40, 64, 64, 3), dtype=np.uint8)
    short = _load("efficientnet-lite0", weights, "packaged", precision, "n")
    full = _load("efficientnet-lite0", weights, "packaged", precision, "n")
    short.input_size = full.input_size = 64
    alone = short.embed(images[:5])
    among_others = full.embed(images[:32])[:5]
    assert np.array_equal(alone, among_others)
    assert np.array_equal(short.embed(images[3:5]), alone[3:5])  # the traced function, called again
