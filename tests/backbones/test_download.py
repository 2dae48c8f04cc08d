"""The ResNet50 download is bounded in time and a failure is remembered for a while (no TensorFlow here)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from auditor.backbones import keras_import, registry, resnet50


def test_a_network_that_drops_packets_fails_within_the_deadline(monkeypatch):
    answer = threading.Event()

    def silent(*_args, **_kwargs):  # a lookup or connect that never answers (dropped packets)
        answer.wait(30)
        raise TimeoutError("the packets were dropped")

    monkeypatch.setattr(socket, "create_connection", silent)
    monkeypatch.setattr(keras_import, "import_keras", lambda: pytest.fail("Keras imported before the network answered"))
    started = time.perf_counter()
    try:
        with pytest.raises(TimeoutError, match="no answer"):
            resnet50.download_weights(connect_timeout_s=0.5)
        assert time.perf_counter() - started < 3
    finally:
        answer.set()  # let the abandoned probe thread end


def test_a_refused_connection_fails_at_once(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(ConnectionRefusedError):
        resnet50.download_weights(connect_timeout_s=5)


def test_the_proxy_is_probed_when_urllib_would_use_one(monkeypatch):
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert resnet50._download_endpoint() == ("proxy.internal", 3128)


@pytest.fixture
def no_keras_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    attempts: list[int] = []

    def failing_download():
        attempts.append(1)
        raise OSError("Name or service not known")

    monkeypatch.setattr(resnet50, "download_weights", failing_download)
    return attempts


def test_a_failed_download_is_remembered_in_the_cache_for_a_while(tmp_path, no_keras_cache):
    cache = tmp_path / "cache"
    cache.mkdir()
    path, reason = registry._resnet50_weights(None, offline=False, required=False, cache_dir=cache)
    assert path is None and "download failed" in reason and len(no_keras_cache) == 1
    path, reason = registry._resnet50_weights(None, offline=False, required=False, cache_dir=cache)
    assert path is None and "min ago" in reason and str(cache / registry.DOWNLOAD_MEMO) in reason
    assert len(no_keras_cache) == 1  # not tried again
    with pytest.raises(Exception):  # asking for ResNet50 by name tries again (and says why it failed)
        registry._resnet50_weights(None, offline=False, required=True, cache_dir=cache)
    assert len(no_keras_cache) == 2
    memo = cache / registry.DOWNLOAD_MEMO
    entry = json.loads(memo.read_text())
    entry["resnet50"]["failed_at"] -= registry.DOWNLOAD_RETRY_AFTER_S + 1
    memo.write_text(json.dumps(entry))
    registry._resnet50_weights(None, offline=False, required=False, cache_dir=cache)
    assert len(no_keras_cache) == 3  # an old failure is retried
    registry._resnet50_weights(None, offline=False, required=False, cache_dir=None)  # --no-cache: no memory
    registry._resnet50_weights(None, offline=False, required=False, cache_dir=None)
    assert len(no_keras_cache) == 5
