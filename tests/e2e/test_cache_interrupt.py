"""A run killed mid-embedding leaves a usable cache: the next run reuses every finished batch."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.e2e.cli_helpers import REPO, SHARED_DATASETS

pytestmark = pytest.mark.slow


def _embedded(cache_file) -> int:
    if not cache_file.exists():
        return 0
    try:
        with sqlite3.connect(cache_file, timeout=1) as db:
            # Vectors live in memory-mapped chunks (encoding/embedding_store.py); SQLite indexes their rows.
            return db.execute("SELECT COUNT(*) FROM embedding_rows").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_killed_embedding_run_resumes_without_recomputing(tmp_path):
    source = SHARED_DATASETS / "hymenoptera_data" / "train"
    if not source.is_dir():
        pytest.skip(f"real photos not found at {source}")
    data = tmp_path / "data"
    for label in ("ants", "bees"):
        (data / label).mkdir(parents=True)
        for photo in sorted((source / label).glob("*.jpg"))[:40]:
            shutil.copy(photo, data / label / photo.name)
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "auditor", "embed", str(data), "--cache-dir", str(cache),
               "--backbone", "efficientnet-lite0", "--batch-size", "4", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while _embedded(cache / "cache.sqlite3") < 12 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = _embedded(cache / "cache.sqlite3")
    assert 12 <= finished < 80, "the run must be killed part-way for this test to mean anything"

    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    cached, computed = map(int, re.search(r"embeddings: (\d+) cached, (\d+) computed", resumed.stdout).groups())
    assert cached >= finished and cached + computed == 80
    with sqlite3.connect(cache / "cache.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM embedding_rows").fetchone()[0] == 80
