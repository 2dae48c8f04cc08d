"""The suite's `--dist loadgroup` really runs the tests marked `KERAS` on one xdist worker.

If pytest or xdist stop honouring the groups (pytest 9.2 did, silently: pytest-dev/pytest-xdist#1386), every worker
imports Keras again and the fast suite slows by seconds, with nothing else failing. This runs a small suite of
grouped tests in a pytest of its own, on two workers, with this project's options, and reads which worker ran each.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

GROUPED = '''
import os
from pathlib import Path

import pytest

from tests.keras_group import KERAS

pytestmark = KERAS


@pytest.mark.parametrize("i", range({count}))
def test_grouped(i):
    (Path({folder!r}) / f"{{__name__}}-{{i}}").write_text(os.environ.get("PYTEST_XDIST_WORKER", "none"))
'''

UNGROUPED = '''
import time

import pytest


@pytest.mark.parametrize("i", range(8))
def test_other(i):
    time.sleep(0.05)  # work enough for the other worker to take some
'''


@pytest.mark.slow  # a pytest of its own on two workers (≈ 5 s)
def test_tests_marked_keras_run_on_one_worker(tmp_path):
    pytest.importorskip("xdist")
    suite, seen = tmp_path / "suite", tmp_path / "seen"
    suite.mkdir()
    seen.mkdir()
    for name in ("test_first_keras.py", "test_second_keras.py"):
        (suite / name).write_text(GROUPED.format(count=4, folder=str(seen)))
    (suite / "test_plain.py").write_text(UNGROUPED)
    # The project's own pyproject.toml (its addopts: `--dist loadgroup`) applies: rootdir is the project.
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider",
                           "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), str(suite)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    workers = {path.read_text() for path in seen.iterdir()}
    assert len(list(seen.iterdir())) == 8
    assert len(workers) == 1 and workers != {"none"}, workers
