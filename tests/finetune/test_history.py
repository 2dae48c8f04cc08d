"""auditor/history.py: the user's own training log, in every form Keras writes it; bad lines are counted, never fatal."""

from __future__ import annotations

import json

import pytest

from auditor.errors import ConfigError
from auditor.finetune.history import parse_history, read_history

TF2_LOG = """\
Found 2000 files belonging to 2 classes.
Epoch 1/3
 1/63 [..............................] - ETA: 1:02 - loss: 0.9000 - acc: 0.4000
63/63 [==============================] - 14s 210ms/step - loss: 0.6931 - acc: 0.5000 - val_loss: 0.6900 - val_acc: 0.5500
Epoch 2/3
63/63 [==============================] - 12s 190ms/step - loss: 0.4000 - acc: 0.8000 - val_loss: 0.5000 - val_acc: 0.7500
Epoch 3/3
63/63 [==============================] - 12s 190ms/step - loss: 0.1000 - acc: 0.9900 - val_loss: 0.6000 - val_acc: 0.8100
"""

KERAS3_LOG = (
    "Epoch 1/2\n"
    "\r 1/63 ━━━━━━━━━━━━━━━━━━━━ 1:02 1s/step - accuracy: 0.4000 - loss: 0.9000"
    "\r63/63 ━━━━━━━━━━━━━━━━━━━━ 14s 210ms/step - accuracy: 0.5000 - loss: 0.6931 - val_accuracy: 0.5500 - val_loss: 0.6900\n"
    "Epoch 2/2\n"
    "63/63 ━━━━━━━━━━━━━━━━━━━━ 12s 190ms/step - accuracy: 0.8000 - loss: 0.4000 - val_accuracy: 0.7500 - val_loss: 0.5000\n"
)


def test_tf2_text_log_with_progress_bars_and_timing_columns():
    history = parse_history(TF2_LOG)
    assert history.format == "keras-text"
    assert history.loss == [0.6931, 0.4, 0.1]
    assert history.acc == [0.5, 0.8, 0.99]
    assert history.val_loss == [0.69, 0.5, 0.6]
    assert history.val_acc == [0.55, 0.75, 0.81]
    assert history.declared_epochs == 3
    assert history.malformed_lines == 0
    assert history.ignored_lines == 1  # "Found 2000 files …"


def test_keras3_log_with_accuracy_spelling_and_carriage_return_redraws():
    history = parse_history(KERAS3_LOG)
    assert history.acc == [0.5, 0.8]
    assert history.val_acc == [0.55, 0.75]
    assert history.loss == [0.6931, 0.4]


def test_backspace_redraws_of_a_terminal_progress_bar():
    log = ("Epoch 1/1\n 1/2 [=====>....] - ETA: 0s - loss: 0.9000 - acc: 0.1000" + "\x08" * 60
           + "2/2 [==========] - 1s 5ms/step - loss: 0.5000 - acc: 0.7000 - val_loss: 0.4000 - val_acc: 0.8000\n")
    history = parse_history(log)
    assert history.acc == [0.7] and history.val_acc == [0.8]


def test_verbose_2_lines_without_timing_columns_and_without_validation():
    log = "Epoch 1/2\n - loss: 1.0 - accuracy: 0.25\nEpoch 2/2\n - loss: 0.5 - accuracy: 0.5\n"
    history = parse_history(log)
    assert history.loss == [1.0, 0.5] and history.acc == [0.25, 0.5]
    assert history.val_loss == [None, None] and history.val_acc == [None, None]


def test_malformed_lines_are_skipped_and_counted():
    log = TF2_LOG.replace("Epoch 2/3", "Epoch 2/") + (
        "63/63 [=====] - 12s - loss: 0.1 - acc: 0.9x - val_loss: 0.3 - val_acc: 0.8\n"
        "63/63 [=====] - 12s - loss: 0.1 - acc: 0.9 - val_loss:\n"
    )
    history = parse_history(log)
    assert history.malformed_lines == 3
    # The cut-off "Epoch 2/" line: epoch 2's final line lands in epoch 1's block and, having val_,
    # is kept as the later value only if no val line preceded it; the first complete epoch stays intact.
    assert history.val_acc[0] in (0.55, 0.75)
    assert history.val_acc[-1] == 0.81


def test_nan_and_scientific_values():
    history = parse_history("Epoch 1/1\n1/1 - 0s - loss: nan - acc: 1.5e-01 - val_loss: inf - val_acc: 0.5\n")
    assert history.loss == [None] and history.acc == [0.15] and history.val_loss == [None] and history.val_acc == [0.5]


def test_csv_logger_file_with_a_repeated_header_and_a_bad_row():
    text = ("epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\n"
            "0,0.5,5e-06,0.69,0.55,0.68\n"
            "1,0.8,5e-06,0.40\n"
            "epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\n"
            "1,0.9,5e-06,0.30,0.80,0.50\n"
            "2,oops,5e-06,0.20,0.81,0.55\n")
    history = parse_history(text)
    assert history.format == "csv"
    assert history.acc == [0.5, 0.9]
    assert history.val_acc == [0.55, 0.8]
    assert history.loss == [0.69, 0.3]
    assert history.malformed_lines == 2


def test_json_dump_of_history_history_and_of_a_dataframe():
    data = {"loss": [0.7, 0.3], "acc": [0.5, 0.9], "val_loss": [0.6, 0.5], "val_acc": [0.6, 0.8]}
    history = parse_history(json.dumps(data))
    assert history.format == "json" and history.series() == data
    frame = {"loss": {"1": 0.3, "0": 0.7}, "accuracy": {"0": 0.5, "1": 0.9}}
    history = parse_history(json.dumps(frame))
    assert history.loss == [0.7, 0.3] and history.acc == [0.5, 0.9] and history.val_acc == [None, None]


def test_json_with_bad_values_counts_them():
    history = parse_history(json.dumps({"history": {"loss": [0.5, "x", None], "val_accuracy": [0.1, 0.2, 0.3]}}))
    assert history.loss == [0.5, None, None]
    assert history.val_acc == [0.1, 0.2, 0.3]
    assert history.malformed_lines == 1


def test_garbage_never_raises_and_yields_no_epochs():
    for text in ("", "\x00\x01binary", "{not json", "epoch,\n,,,\n"):
        history = parse_history(text)
        assert history.epochs == 0 and history.loss == [] and history.val_acc == []
    # Lines that look like a log but carry no numbers are counted, not silently dropped.
    assert parse_history("Epoch\n" * 5).malformed_lines == 5
    assert parse_history("acc: acc: acc:").malformed_lines == 1


def test_read_history_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        read_history(tmp_path / "nope.log")
    path = tmp_path / "fit.log"
    path.write_bytes(TF2_LOG.encode() + b"\xff\xfe broken bytes\n")
    history = read_history(path)
    assert history.source == "fit.log" and history.epochs == 3
