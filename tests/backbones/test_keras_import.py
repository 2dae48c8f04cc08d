"""The auditor command's own process imports Keras without the optional libraries Keras would import only to
accept their types (pandas) or to draw (matplotlib); they stay importable afterwards, and a library caller's
Keras is untouched. Run in fresh interpreters: this test process may have imported Keras already."""

import importlib.util
import subprocess
import sys

import pytest

PROBE = """
import sys
from auditor.backbones import keras_import
{switch}
keras_import.import_keras()
print(sorted(name for name in keras_import.KERAS_OPTIONAL_IMPORTS if name in sys.modules))
for name in keras_import.KERAS_OPTIONAL_IMPORTS:
    assert name not in sys.modules or sys.modules[name] is not None
"""


def _imported_with_keras(switch: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE.format(switch=switch)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.slow  # two interpreters importing TensorFlow: seconds
@pytest.mark.skipif(importlib.util.find_spec("pandas") is None, reason="pandas is not installed")
def test_the_command_s_keras_skips_pandas_and_matplotlib_and_leaves_them_importable():
    assert _imported_with_keras("keras_import.skip_keras_optional_imports()") == "[]"
    skipped_then_imported = _imported_with_keras(
        "keras_import.skip_keras_optional_imports()\nkeras_import.import_keras()\nimport pandas")
    assert skipped_then_imported == "['pandas']"
    assert _imported_with_keras("") == "['matplotlib', 'pandas']"  # a library caller's Keras imports them


def test_the_installed_commands_ask_for_it():
    probe = ("from auditor.backbones import keras_import\nfrom auditor.cli import run_as_program\n"
             "run_as_program(lambda: print(keras_import._skip_optional_imports))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "True"), done.stderr[-2000:]
