"""auditor: audit an image-classification dataset before training on it.

    import auditor
    report = auditor.audit("data/", validation_split=0.2, seed=1337)
    report = auditor.audit_keras(train_ds, val_ds, seed=1337)

The names below load on first use (PEP 562), so `import auditor` stays instant and imports neither
TensorFlow nor NumPy nor the command line's libraries; they load when an audit runs.
"""

__version__ = "0.1.0"

# name -> the module that defines it
_LAZY = {
    "audit": "auditor.api",
    "audit_keras": "auditor.api",
    "Report": "auditor.report",
    "CheckResult": "auditor.report",
    "Finding": "auditor.report",
    "Status": "auditor.report",
    "Severity": "auditor.report",
    "AuditorError": "auditor.errors",
    "ConfigError": "auditor.errors",
    "DatasetError": "auditor.errors",
    "BackboneError": "auditor.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'auditor' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
