"""A short embedding job traces the model without TensorFlow's graph optimiser (cheaper start for a merge gate):
its embeddings must be bit-identical to a normally traced model's in bfloat16 (the CPU default here), within
float32 rounding in float32 (far below the float16 the cache stores), and the optimiser must be back on
afterwards for everything else."""

import numpy as np
import pytest

from auditor.backbones.registry import SHORT_JOB_IMAGES, _load, packaged_efficientnet_weights


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_a_short_job_embeds_exactly_as_a_long_one(precision):
    import tensorflow as tf

    weights = packaged_efficientnet_weights()
    batch = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    short = _load("efficientnet-lite0", weights, "packaged", precision, "n")
    long = _load("efficientnet-lite0", weights, "packaged", precision, "n")
    short.input_size = long.input_size = 64
    short.expected_images, long.expected_images = 5, SHORT_JOB_IMAGES + 1
    same = np.array_equal if precision == "bfloat16" else (
        lambda a, b: np.allclose(a, b, rtol=1e-5, atol=1e-5))  # fused and unfused float32 kernels round apart
    assert same(short.embed(batch), long.embed(batch))
    assert not tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    assert same(short.embed(batch), long.embed(batch))  # the traced functions, called again
