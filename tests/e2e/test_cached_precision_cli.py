"""A re-audit on a machine whose `--precision auto` differs from the machine that filled the cache reuses the
cached embeddings (real CLI, real offline backbone, the bundled samples)."""

from __future__ import annotations

import pytest

from auditor.engines import device
from tests.e2e.cli_helpers import SAMPLES, run_cli

pytestmark = pytest.mark.slow


def test_auto_follows_the_precision_the_cache_holds_and_embeds_nothing_again(tmp_path, monkeypatch):
    common = ("audit", SAMPLES, "--offline", "--backbone", "efficientnet-lite0", "--checks", "outliers",
              "--cache-dir", tmp_path / "cache", "-q", "--exit-zero")
    first = run_cli(*common, "--precision", "bfloat16", out=tmp_path / "first")  # as a machine with AMX chooses
    assert first.report["backbone"]["precision"] == "bfloat16"
    monkeypatch.setattr(device, "cpu_precision", lambda cpuinfo=None: "float32")  # a machine without AMX
    again = run_cli(*common, out=tmp_path / "again")
    assert again.exit_code == 0, again.stderr
    assert again.report["backbone"]["precision"] == "bfloat16"
    notes = " ".join(again.report["notes"])
    assert "Precision: bfloat16, in which the cache holds" in notes and "(float32, the fastest here, holds 0)" in notes
    assert " 0 computed" in notes  # every embedding came from the cache
    fresh = run_cli(*common[:-4], "--cache-dir", tmp_path / "other", "-q", "--exit-zero", out=tmp_path / "fresh")
    assert fresh.report["backbone"]["precision"] == "float32"  # nothing cached: the fastest here
