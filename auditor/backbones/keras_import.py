"""Import Keras (and its backend) and build models without the C++ start-up chatter on stderr.

TensorFlow's native code prints oneDNN/CUDA notices ("could not find cuda drivers", "failed call to
cuInit") straight to file descriptor 2, before and regardless of its log settings. They are noise in a
report tool whose stderr carries progress and errors, so the descriptor points at /dev/null while
Keras is imported and a model is built. Python exceptions still propagate and are reported normally.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager


@contextmanager
def quiet_native_stderr():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras():
    """Keras and its backend (in the auditor command's process without pandas and matplotlib: `lean_imports`)."""
    if "keras" not in sys.modules:
        with quiet_native_stderr():
            import keras  # noqa: F401  (imports the backend, e.g. TensorFlow)

            if keras.backend.backend() == "tensorflow":
                import tensorflow  # noqa: F401
            if keras.backend.backend() == "jax" and _compiled_models_folder is not None:
                keep_jax_compilations(_compiled_models_folder)
    return sys.modules["keras"]


COMPILED_MODELS = "compiled-models"  # the cache's folder for them
_compiled_models_folder: str | None = None
JAX_CACHE_MIN_COMPILE_S = 0.0  # every compilation: a backbone leaves ≈ 50 small ones and its model's (240 KB in all on CPUs)


def keep_compiled_models_in(folder: str | None) -> None:
    """Where the JAX backend keeps the models it compiles, across runs (None: nowhere). Set before Keras is imported;
    applied when it is, and only under JAX: XLA compiled each batch shape and precision of a backbone in 4-23 s on an
    H200, in every audit, which a merge gate of 30 images on a GPU would pay in full. TensorFlow and torch run the
    model without such a compilation. None does not take back a folder JAX was
    already given in this process (JAX keeps its cache once set up): a --no-cache audit after a cached one in the
    same Python process still keeps its compilations there."""
    global _compiled_models_folder
    _compiled_models_folder = folder
    if "keras" in sys.modules and sys.modules["keras"] is not None and folder is not None:
        if sys.modules["keras"].backend.backend() == "jax":
            keep_jax_compilations(folder)


def keep_jax_compilations(folder: str) -> None:
    import jax

    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", JAX_CACHE_MIN_COMPILE_S)
