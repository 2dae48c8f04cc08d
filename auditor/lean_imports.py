"""Heavy libraries imported without the optional libraries they import only to accept those libraries' types.

Keras imports pandas (its data adapters accept frames) and matplotlib (its plotting helpers); scikit-learn imports
pandas (to accept frames): each behind `try: import … except ImportError`. auditor hands them neither, and in a
merge gate of ≈ 5 s those imports cost ≈ 0.45 s (Keras') and ≈ 0.19 s (scikit-learn's pandas, measured in a fresh
interpreter: 0.42 → 0.23 s for the scikit-learn modules the checks use). So in the auditor command's own process
(`enable`, called by `cli.run_as_program`) the first import of each such library runs with its optional imports
made to fail, and they stay importable afterwards. A library caller's process is left alone: its Keras and
scikit-learn keep accepting pandas frames (each binds the name once, when it is first imported).
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

OPTIONAL_IMPORTS: dict[str, tuple[str, ...]] = {"keras": ("pandas", "matplotlib"), "sklearn": ("pandas",)}


def enable() -> None:
    """From now on, import each library of OPTIONAL_IMPORTS that is not imported yet without its optional imports."""
    if not enabled():
        sys.meta_path.insert(0, _LeanFinder())


def enabled() -> bool:
    return any(isinstance(finder, _LeanFinder) for finder in sys.meta_path)


class _LeanFinder(importlib.abc.MetaPathFinder):
    """Finds a library of OPTIONAL_IMPORTS as the other finders do, and has it executed without its optional imports."""

    def find_spec(self, fullname: str, path: Any, target: Any = None):
        optional = OPTIONAL_IMPORTS.get(fullname)
        if optional is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _WithoutOptional(spec.loader, optional)
        return spec


class _WithoutOptional(importlib.abc.Loader):
    """Runs the library's own loader with its optional imports failing (a None entry in sys.modules makes
    `import name` raise ImportError, which the libraries' guards expect), then gives the module its own loader back."""

    def __init__(self, loader: Any, optional: tuple[str, ...]) -> None:
        self.loader, self.optional = loader, optional

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # resources and reloads see the real loader
        skipped = [name for name in self.optional if name not in sys.modules]
        for name in skipped:
            sys.modules[name] = None  # type: ignore[assignment]
        try:
            self.loader.exec_module(module)
        finally:
            for name in skipped:
                if name in sys.modules and sys.modules[name] is None:
                    del sys.modules[name]
