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
    if "keras" not in sys.modules:
        with quiet_native_stderr():
            import keras  # noqa: F401  (imports the backend, e.g. TensorFlow)

            if keras.backend.backend() == "tensorflow":
                import tensorflow  # noqa: F401
    return sys.modules["keras"]
