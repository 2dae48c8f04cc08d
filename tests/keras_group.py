"""Keras is imported by the tests that need it, on one xdist worker.

Importing Keras (and TensorFlow behind it) takes ≈ 6 s. A test module that imports it at the top makes every
xdist worker pay that while collecting; these modules instead get Keras (or an auditor module that imports it)
through `lazy_module` when a test first touches it, and carry `KERAS` so that `--dist loadgroup` (the suite's
default) runs them all on the same worker.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

KERAS = pytest.mark.xdist_group("keras")


class lazy_module:  # noqa: N801 - used like the module it stands for
    """Stands for module `name`, imported on first attribute access."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str):
        if attribute.startswith(("_", "pytest")):  # pytest inspects every module attribute while collecting
            raise AttributeError(attribute)
        module: ModuleType = importlib.import_module(self._name)
        return getattr(module, attribute)
