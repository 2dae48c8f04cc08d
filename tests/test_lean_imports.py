"""The auditor command's own process imports Keras and scikit-learn without the optional libraries they would
import only to accept those libraries' types (pandas) or to draw (matplotlib); those stay importable afterwards,
and a library caller's imports are untouched. Run in fresh interpreters: this test process has imported them."""

import importlib.util
import subprocess
import sys

import pytest

PROBE = """
import sys
from auditor import lean_imports
{switch}
{imports}
print(sorted(name for name in ("pandas", "matplotlib") if name in sys.modules))
for name in ("pandas", "matplotlib"):
    assert name not in sys.modules or sys.modules[name] is not None
"""

needs_pandas = pytest.mark.skipif(importlib.util.find_spec("pandas") is None, reason="pandas is not installed")


def _imported_with(imports: str, switch: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE.format(switch=switch, imports=imports)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


KERAS = "from auditor.backbones import keras_import\nkeras_import.import_keras()"


@pytest.mark.slow  # two interpreters importing TensorFlow: seconds
@needs_pandas
def test_the_command_s_keras_skips_pandas_and_matplotlib_and_leaves_them_importable():
    assert _imported_with(KERAS, "lean_imports.enable()") == "[]"
    assert _imported_with(f"{KERAS}\nimport pandas", "lean_imports.enable()") == "['pandas']"
    assert _imported_with(KERAS, "") == "['matplotlib', 'pandas']"  # a library caller's Keras imports them


SKLEARN = """
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
x = np.random.default_rng(0).normal(size=(40, 3)); y = (x[:, 0] > 0).astype(int)
assert cross_val_score(LogisticRegression(), x, y, cv=StratifiedKFold(4)).mean() > 0.8
import sklearn
assert type(sklearn.__spec__.loader).__name__ != "_WithoutOptional"  # the module keeps its own loader
"""


@pytest.mark.slow  # three interpreters importing scikit-learn: ≈ 4 s
@needs_pandas
def test_the_command_s_scikit_learn_skips_pandas_works_and_leaves_it_importable():
    assert _imported_with(SKLEARN, "lean_imports.enable()") == "[]"
    assert _imported_with(f"{SKLEARN}\nimport pandas", "lean_imports.enable()") == "['pandas']"
    assert _imported_with(SKLEARN, "") == "['pandas']"  # a library caller's scikit-learn imports it


def test_the_installed_commands_ask_for_it():
    probe = ("from auditor import lean_imports\nfrom auditor.cli import run_as_program\n"
             "run_as_program(lambda: print(lean_imports.enabled()))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "True"), done.stderr[-2000:]
