"""Under JAX, the models XLA compiles are kept in the cache folder across runs (4-23 s per batch shape and precision
on an H200, paid by every audit before). JAX is not a dependency, so the backend is stood in for here; the effect
on a real JAX was measured by hand (README, GPUs)."""

from __future__ import annotations

import sys
import types

import pytest

from auditor.backbones import keras_import


class _Config:
    def __init__(self):
        self.updates: dict[str, object] = {}

    def update(self, name, value):
        self.updates[name] = value


def _backend(monkeypatch, name: str) -> _Config:
    keras = types.SimpleNamespace(backend=types.SimpleNamespace(backend=lambda: name))
    jax = types.SimpleNamespace(config=_Config())
    monkeypatch.setitem(sys.modules, "keras", keras)
    monkeypatch.setitem(sys.modules, "jax", jax)
    monkeypatch.setattr(keras_import, "_compiled_models_folder", None)
    return jax.config


def test_under_jax_compilations_go_to_the_folder_asked_for(monkeypatch, tmp_path):
    config = _backend(monkeypatch, "jax")
    keras_import.keep_compiled_models_in(str(tmp_path / "compiled-models"))
    assert config.updates == {"jax_compilation_cache_dir": str(tmp_path / "compiled-models"),
                              "jax_persistent_cache_min_compile_time_secs": 0.0}


@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_other_backends_are_left_alone(monkeypatch, tmp_path, backend):
    config = _backend(monkeypatch, backend)
    keras_import.keep_compiled_models_in(str(tmp_path))
    assert config.updates == {}


def test_an_audit_keeps_them_in_its_cache_folder_and_nowhere_without_a_cache(monkeypatch, tmp_path):
    from auditor.runner import prepare
    from auditor.settings import resolve
    from PIL import Image

    asked: list = []
    monkeypatch.setattr("auditor.runner.keep_compiled_models_in", asked.append)
    monkeypatch.setattr("auditor.runner.encode_dataset", lambda *a, **k: None)  # nothing to embed: the setting only
    for name in ("a", "b"):
        (tmp_path / "data" / "cat").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 40), name == "a" and "red" or "blue").save(tmp_path / "data" / "cat" / f"{name}.png")
    for given in ({"cache_dir": tmp_path / "cache"}, {"use_cache": False}):
        config = resolve(tmp_path / "data", {"backbone": "efficientnet-lite0", "offline": True, **given}).config
        prepare(tmp_path / "data", config)
    assert asked == [str(tmp_path / "cache" / "compiled-models"), None]
