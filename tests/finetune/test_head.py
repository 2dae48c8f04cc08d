"""auditor/feature_maps.py and auditor/finetune.py: the cached maps and the reference head trained on them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from auditor.encoding.cache import Cache
from auditor.config import FinetuneOptions
from auditor.index.dataset import DatasetIndex
from auditor.encoding.encode import encode_dataset
from auditor.errors import ConfigError
from auditor.encoding.feature_maps import FeatureMapStore
from auditor.finetune.head import balanced_class_weights, stratified_holdout
from tests.encoding.test_encode import LIMITS, MAX_BYTES, FakeBackbone, make_image, record

MAP_SHAPE = (2, 2, 3)


def _maps(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((count, *MAP_SHAPE)).astype(np.float16)


# --- the feature-map store ---------------------------------------------------------------------

def test_store_round_trip_is_float16_memory_mapped_and_survives_reopening(tmp_path):
    store = FeatureMapStore(tmp_path, "net|w|v1")
    maps = _maps(5)
    store.put([f"s{i}" for i in range(5)], maps)
    again = FeatureMapStore(tmp_path, "net|w|v1")
    assert len(again) == 5 and again.shape == MAP_SHAPE and again.missing(["s1", "zz"]) == ["zz"]
    gathered = again.gather(["s3", "s0"])
    assert gathered.dtype == np.float16
    np.testing.assert_array_equal(gathered, maps[[3, 0]])
    assert isinstance(again.get("s1").base, np.memmap) or isinstance(again.get("s1"), np.memmap)


def test_other_backbone_keys_never_share_maps(tmp_path):
    FeatureMapStore(tmp_path, "net|w|v1").put(["a"], _maps(1))
    assert "a" not in FeatureMapStore(tmp_path, "net|w|v2")


def test_existing_contents_are_not_written_twice(tmp_path):
    store = FeatureMapStore(tmp_path, "k")
    store.put(["a", "b"], _maps(2))
    store.put(["b", "c"], _maps(2, seed=1))
    assert store.computed == 3 and len(list(store.folder.glob("chunk-*.npy"))) == 2


def test_an_interrupted_write_leaves_only_whole_chunks(tmp_path):
    store = FeatureMapStore(tmp_path, "k")
    store.put(["a"], _maps(1))
    folder = store.folder
    # What a kill can leave: a temporary file, and a chunk whose index (.json, written last) is missing.
    (folder / ".chunk-dead.tmp").write_bytes(b"half")
    np.save(folder / "chunk-noindex.npy", _maps(1))
    (folder / "chunk-broken.json").write_text("{not json")
    reopened = FeatureMapStore(tmp_path, "k")
    assert len(reopened) == 1 and "a" in reopened


def test_chunks_are_plain_arrays_never_pickles(tmp_path):
    store = FeatureMapStore(tmp_path, "k")
    store.put(["a"], _maps(1))
    chunk = next(store.folder.glob("chunk-*.npy"))
    np.load(chunk, allow_pickle=False)  # raises if the file held objects
    meta = json.loads(chunk.with_suffix(".json").read_text())
    assert meta == {"shas": ["a"], "shape": list(MAP_SHAPE)}
    # A chunk replaced by a pickled object array is refused, not executed.
    np.save(chunk, np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        FeatureMapStore(tmp_path, "k").get("a")


def test_no_cache_uses_a_private_temporary_folder():
    store = FeatureMapStore(None, "k")
    store.put(["a"], _maps(1))
    folder = store.folder
    assert folder.exists()
    store.close()
    assert not folder.exists()


def test_mismatched_shapes_are_refused(tmp_path):
    store = FeatureMapStore(tmp_path, "k")
    store.put(["a"], _maps(1))
    with pytest.raises(ValueError):
        store.put(["b"], np.zeros((1, 3, 3, 3), np.float16))


# --- the encode pass computes maps with the embeddings -------------------------------------------

class FakeMapsBackbone(FakeBackbone):
    def __init__(self):
        super().__init__("fake|maps")
        self.map_batches: list[int] = []

    def embed_with_maps(self, batch):
        self.map_batches.append(len(batch))
        maps = np.broadcast_to(batch[:, :2, :2, :].astype(np.float16), (len(batch), 2, 2, 3)).copy()
        return self.embed(batch), maps


def _index(tmp_path, count=6) -> DatasetIndex:
    records = []
    for i in range(count):
        make_image(tmp_path / "d" / "train" / f"c{i % 2}" / f"{i}.png", seed=i)
        records.append(record(tmp_path / "d", f"train/c{i % 2}/{i}.png"))
    return DatasetIndex(root=tmp_path / "d", layout="splits", records=records)


def test_maps_are_computed_in_the_embedding_pass_once(tmp_path):
    index = _index(tmp_path)
    cache = Cache(tmp_path / "cache")
    backbone = FakeMapsBackbone()
    store = FeatureMapStore(tmp_path / "cache", "fake|maps|maps")
    first = encode_dataset(index, cache, backbone, LIMITS, MAX_BYTES, batch_size=4, feature_maps=store)
    assert first.stats["feature_maps_computed"] == 6 and first.stats["embeddings_computed"] == 6
    assert sum(backbone.map_batches) == 6 and len(store) == 6
    # Second run: nothing decoded for the backbone, nothing recomputed.
    again = FakeMapsBackbone()
    second = encode_dataset(index, cache, again, LIMITS, MAX_BYTES, batch_size=4,
                            feature_maps=FeatureMapStore(tmp_path / "cache", "fake|maps|maps"))
    assert second.stats["feature_maps_computed"] == 0 and again.map_batches == [] and again.embedded == 0


def test_maps_for_images_whose_embeddings_are_already_cached(tmp_path):
    index = _index(tmp_path)
    cache = Cache(tmp_path / "cache")
    encode_dataset(index, cache, FakeMapsBackbone(), LIMITS, MAX_BYTES, batch_size=4)  # embeddings only
    backbone = FakeMapsBackbone()
    store = FeatureMapStore(tmp_path / "cache", "fake|maps|maps")
    encoded = encode_dataset(index, cache, backbone, LIMITS, MAX_BYTES, batch_size=4, feature_maps=store)
    assert encoded.stats["feature_maps_computed"] == 6 and encoded.stats["embeddings_computed"] == 0
    assert encoded.feature_maps is store and len(encoded.embeddings) == 6


def test_without_the_finetune_the_embedding_pass_is_unchanged(tmp_path):
    backbone = FakeMapsBackbone()
    encoded = encode_dataset(_index(tmp_path), Cache(None), backbone, LIMITS, MAX_BYTES, batch_size=4)
    assert backbone.map_batches == [] and encoded.feature_maps is None
    assert "feature_maps_computed" not in encoded.stats


# --- splits, weights, options --------------------------------------------------------------------

def test_stratified_holdout_is_seeded_and_keeps_class_shares():
    labels = ["a"] * 50 + ["b"] * 10 + ["c"] * 1
    held = stratified_holdout(labels, 0.2, seed=3)
    assert held[:50].sum() == 10 and held[50:60].sum() == 2 and not held[60]
    np.testing.assert_array_equal(held, stratified_holdout(labels, 0.2, seed=3))
    assert not np.array_equal(held, stratified_holdout(labels, 0.2, seed=4))


def test_balanced_class_weights():
    weights = balanced_class_weights(np.array([0, 0, 0, 1]), 3)
    np.testing.assert_allclose(weights, [4 / 6, 2.0, 0.0])


def test_finetune_options_keep_the_reference_architecture_and_bounds_are_checked():
    options = FinetuneOptions()
    assert (options.schedule, options.learning_rate, options.epochs, options.patience, options.batch_size) == (
        "fast", 1e-3, 20, 3, 256)
    assert (options.dense_units, options.l2, options.dropout, options.class_weights, options.augment) == \
        (1024, 0.003, 0.5, True, False)
    reference = FinetuneOptions.with_schedule("reference")
    assert (reference.learning_rate, reference.epochs, reference.patience, reference.batch_size) == (5e-6, 100, 10, 32)
    assert FinetuneOptions.with_schedule("reference", epochs=7).epochs == 7  # a given field wins over the schedule
    # The fast schedule stops on the held-out cross-entropy; the reference run on Keras' val_loss (L2 included).
    assert (options.stop_on, FinetuneOptions.with_schedule("fast").stop_on, reference.stop_on) == (
        "val_cross_entropy", "val_cross_entropy", "val_loss")
    with pytest.raises(ConfigError, match="finetune.stop_on"):
        FinetuneOptions(stop_on="val_accuracy")
    with pytest.raises(ConfigError, match="finetune.schedule"):
        FinetuneOptions.with_schedule("slow")
    with pytest.raises(ConfigError, match="finetune.dropout"):
        FinetuneOptions(dropout=1.5)
    with pytest.raises(ConfigError, match="finetune.learning_rate"):
        FinetuneOptions(learning_rate=0)


# --- the head (TensorFlow) -------------------------------------------------------------------------

@pytest.mark.slow
def test_reference_head_architecture_on_efficientnet_lite0_maps():
    from auditor.finetune.head import build_reference_head

    model = build_reference_head((7, 7, 1280), 2, FinetuneOptions())
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Flatten", "Dense", "BatchNormalization", "ReLU", "Dropout", "Dense",
                     "BatchNormalization", "ReLU", "Dropout", "Dense", "BatchNormalization", "Softmax"]
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    assert all(not layer.use_bias for layer in dense)
    assert [layer.units for layer in dense] == [1024, 1024, 2]
    assert dense[0].kernel_regularizer.l2 == pytest.approx(0.003) and dense[2].kernel_regularizer is None
    assert model.count_params() == 7 * 7 * 1280 * 1024 + 1024 * 1024 + 1024 * 2 + 4 * (1024 + 1024 + 2)


def _separable(count: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count)
    maps = rng.normal(0, 1, (count, 2, 2, 8)).astype(np.float16)
    maps[:, :, :, 0] += np.where(labels == 1, 2.0, -2.0)[:, None, None]
    return maps, labels


@pytest.mark.slow
def test_head_learns_records_curves_and_is_reproducible():
    from auditor.finetune.head import array_source, train_head

    x, y = _separable(160, 0)
    options = FinetuneOptions(epochs=12, patience=3, learning_rate=3e-3, dense_units=32, batch_size=16)
    runs = [train_head(array_source(x[:120]), y[:120], array_source(x[120:]), y[120:], (2, 2, 8), 2, options, seed=7)
            for _ in range(2)]
    run = runs[0]
    assert run.val_accuracy >= 0.9 and run.train_accuracy >= 0.9
    assert all(len(run.history[k]) == run.epochs_run for k in ("loss", "acc", "val_loss", "val_acc"))
    assert 1 <= run.best_epoch <= run.epochs_run
    assert run.val_probs.shape == (40, 2) and run.train_probs.shape == (120, 2)
    np.testing.assert_allclose(runs[0].history["val_loss"], runs[1].history["val_loss"], rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("stop_on", ["val_cross_entropy", "val_loss"])
def test_early_stopping_restores_the_best_epoch_of_what_it_watches(stop_on):
    from auditor.finetune.head import array_source, train_head

    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (120, 2, 2, 8)).astype(np.float16)
    y = rng.integers(0, 2, 120)  # labels unrelated to the maps: the held-out loss can only get worse
    options = FinetuneOptions(epochs=60, patience=2, learning_rate=1e-2, dense_units=64, batch_size=16, stop_on=stop_on)
    run = train_head(array_source(x[:80]), y[:80], array_source(x[80:]), y[80:], (2, 2, 8), 2, options, seed=0)
    assert run.stopped_early and run.epochs_run < 60
    assert run.best_epoch == int(np.argmin(run.history[stop_on])) + 1
    assert run.epochs_run - run.best_epoch == 2
    # Keras' val_loss carries the head's L2 penalty on top of the held-out cross-entropy: why the fast schedule
    # does not watch it (the penalty keeps falling while the weights shrink).
    penalty = np.array(run.history["val_loss"]) - np.array(run.history["val_cross_entropy"])
    assert (penalty > 1e-3).all()
