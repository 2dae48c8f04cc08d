"""bench/bench_copy_layers.py: the 2 × 2 grid it measures is each quarter's mean, the same in numpy and in the
Keras graph the audit variant builds."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))


def test_grid_means_are_each_quarters_mean_in_numpy_and_in_keras():
    import bench_copy_layers
    from auditor.backbones.keras_import import import_keras

    keras = import_keras()
    maps = np.zeros((1, 6, 6, 2), dtype=np.float32)
    maps[0, :3, :3, 0], maps[0, :3, 3:, 0], maps[0, 3:, :3, 0], maps[0, 3:, 3:, 0] = 1, 2, 3, 4
    maps[0, :, :, 1] = np.arange(36).reshape(6, 6)
    expected = [1, np.arange(36).reshape(6, 6)[:3, :3].mean(), 2, np.arange(36).reshape(6, 6)[:3, 3:].mean(),
                3, np.arange(36).reshape(6, 6)[3:, :3].mean(), 4, np.arange(36).reshape(6, 6)[3:, 3:].mean()]
    assert np.allclose(bench_copy_layers.grid_means(maps)[0], expected)
    graph = keras.ops.convert_to_numpy(bench_copy_layers.grid_means(keras.ops.convert_to_tensor(maps), keras.ops))
    assert np.allclose(graph[0], expected)
