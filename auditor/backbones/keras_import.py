"""Import Keras (and its backend) once, without the C++ start-up chatter on stderr.

TensorFlow's native code prints oneDNN/CUDA notices straight to file descriptor 2 before its log
settings apply; they are noise in a report tool whose stderr carries progress and errors, so the
descriptor is pointed at /dev/null for the duration of the import only.
"""

from __future__ import annotations

import os
import sys


def import_keras():
    if "keras" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401  (imports the backend, e.g. TensorFlow)

        if keras.backend.backend() == "tensorflow":
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return sys.modules["keras"]
