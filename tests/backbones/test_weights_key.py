"""The embedding cache key names the weights by content, not by file name or by how they were found."""

from __future__ import annotations

import pytest

from auditor.backbones.registry import Backbone, _load
from auditor.errors import BackboneError


def _weights(path, content: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_two_files_with_one_name_get_two_keys_and_one_file_found_two_ways_gets_one(tmp_path):
    mine = _weights(tmp_path / "a" / "resnet50_notop.h5", b"weights one")
    theirs = _weights(tmp_path / "b" / "resnet50_notop.h5", b"weights two")
    copy = _weights(tmp_path / "c" / "renamed.h5", b"weights one")
    keys = {how: _load("resnet50", path, how, "float32", "note").cache_key
            for how, path in (("weights from resnet50_notop.h5", mine), ("cached by Keras", theirs),
                              ("downloaded by Keras", copy))}
    assert keys["weights from resnet50_notop.h5"] != keys["cached by Keras"]  # same name, other content
    assert keys["weights from resnet50_notop.h5"] == keys["downloaded by Keras"]  # same content, found otherwise
    assert all("sha256:" in key for key in keys.values())
    again = _load("resnet50", copy, "cached by Keras", "float32", "another note")
    assert again.cache_key == keys["downloaded by Keras"] and again.feature_map_key.startswith(again.cache_key)


def test_changed_weights_change_the_key_and_random_weights_say_so(tmp_path):
    path = _weights(tmp_path / "w.h5", b"before")
    before = _load("resnet50", path, "weights from w.h5", "float32", "n").cache_key
    _weights(path, b"after, and longer")
    assert _load("resnet50", path, "weights from w.h5", "float32", "n").cache_key != before
    assert "random" in _load("resnet50", None, "random", "float32", "n").cache_key


def test_unreadable_weights_are_a_backbone_error(tmp_path):
    backbone = Backbone("resnet50", "weights from gone.h5", 224, 2048, "float32", "n", tmp_path / "gone.h5")
    with pytest.raises(BackboneError, match="cannot read weights"):
        backbone.cache_key
