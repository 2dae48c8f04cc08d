"""The History that `model.fit` returns, taken directly (`auditor.audit(…, finetune=True, history=model.fit(…))`):
read as a JSON dump of it is read, compared with the reference run the same way, and keyed in the result
cache by its values."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from auditor.checks.reference_finetune import user_history_metrics
from auditor.config import AuditConfig, FinetuneOptions
from auditor.encoding.result_cache import inputs_key
from auditor.errors import ConfigError
from auditor.finetune.history import History, history_from_keras, read_history
from tests.keras_group import KERAS

pytestmark = KERAS  # some tests here import Keras


@pytest.fixture(scope="module")
def fitted():
    """A real History: a tiny Keras model fitted for 3 epochs on random numbers (a second or two)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), rng.integers(0, 2, 64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model.fit(x, y, validation_split=0.25, epochs=3, batch_size=16, verbose=0)


def test_a_keras_history_object(fitted):
    history = history_from_keras(fitted)
    raw = fitted.history
    assert history.loss == pytest.approx(raw["loss"]) and history.val_loss == pytest.approx(raw["val_loss"])
    assert history.acc == pytest.approx(raw["accuracy"]) and history.val_acc == pytest.approx(raw["val_accuracy"])
    assert history.epochs == 3 == history.declared_epochs
    assert (history.format, history.source, history.malformed_lines) == ("keras-history", "History object", 0)
    assert history_from_keras(raw).to_dict()["val_acc"] == history.val_acc  # its .history dict does too


def test_numpy_values_arrays_and_the_json_dump_shape():
    values = {"loss": np.array([0.9, 0.5], dtype=np.float32), "val_loss": [np.float32(1.0), np.float64(0.8)],
              "accuracy": (0.5, 0.75), "val_accuracy": [0.4, None]}
    history = history_from_keras(values)
    assert history.loss == pytest.approx([0.9, 0.5]) and history.val_loss == pytest.approx([1.0, 0.8])
    assert history.acc == [0.5, 0.75] and history.val_acc == [0.4, None] and history.malformed_lines == 0
    assert history_from_keras({"history": {"loss": [1.0]}, "params": {}}).loss == [1.0]
    assert history_from_keras(history) is history
    with pytest.raises(ConfigError, match="history must be a log file, the History that model.fit returns"):
        history_from_keras(42)


def test_the_same_comparison_as_from_a_json_dump_of_it(fitted, tmp_path):
    dump = tmp_path / "history.json"
    dump.write_text(json.dumps(fitted.history))
    reference = SimpleNamespace(run=SimpleNamespace(best_epoch=2, history={
        "acc": [0.5, 0.6, 0.7], "val_acc": [0.5, 0.55, 0.5], "loss": [1, 0.9, 0.8], "val_loss": [1, 0.95, 0.97]}))

    def metrics(history):
        ctx = SimpleNamespace(config=AuditConfig(finetune=FinetuneOptions(history=history)))
        return user_history_metrics(ctx, reference)

    from_object, from_file = metrics(history_from_keras(fitted)), metrics(dump)
    assert from_object["comparison"] == from_file["comparison"]
    assert {k: v for k, v in from_object.items() if k not in ("format", "source", "declared_epochs")} == \
           {k: v for k, v in from_file.items() if k not in ("format", "source", "declared_epochs")}
    assert from_file == {**read_history(dump).to_dict(), "comparison": from_file["comparison"]}


def test_the_result_cache_keys_a_history_by_its_values():
    def key(history: History) -> str:
        ctx = SimpleNamespace(config=AuditConfig(finetune=FinetuneOptions(history=history)), backbone=None,
                              records=[], encoded=SimpleNamespace(record_sha=[], read_problems={}),
                              index=SimpleNamespace(issues=[]))
        return inputs_key(ctx)

    a = history_from_keras({"loss": [1.0, 0.5], "val_loss": [1.0, 0.7]})
    same = history_from_keras({"loss": [1.0, 0.5], "val_loss": [1.0, 0.7]})
    other = history_from_keras({"loss": [1.0, 0.5], "val_loss": [1.0, 0.6]})
    assert a is not same and key(a) == key(same)
    assert key(a) != key(other)
    hash(FinetuneOptions(history=a))  # the options stay hashable with a History inside


def test_a_log_file_is_parsed_when_the_settings_are_resolved_so_an_edit_changes_the_key(tmp_path):
    """Keyed by its file name, an edited log would be answered from the cache with the old run's numbers."""
    from auditor.settings import merge_finetune

    log = tmp_path / "fit.log"
    log.write_text("Epoch 1/1\n1/1 - loss: 0.5 - acc: 0.7 - val_loss: 0.6 - val_acc: 0.6\n")
    first = merge_finetune(None, {"history": str(log)})
    assert first.history.to_dict() == read_history(log).to_dict() and first.history.source == "fit.log"
    log.write_text("Epoch 1/1\n1/1 - loss: 0.4 - acc: 0.8 - val_loss: 0.6 - val_acc: 0.6\n")
    edited = merge_finetune(None, {"history": log})
    assert edited.history.acc == [0.8] and repr(edited) != repr(first)
    assert isinstance(merge_finetune(None, {"history": {"loss": [0.5]}}).history, History)
    with pytest.raises(ConfigError, match="does not exist"):
        merge_finetune(None, {"history": Path(tmp_path / "missing.log")})
