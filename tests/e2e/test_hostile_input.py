"""Hostile and odd input: every case is a named finding or a one-line error with a tip (exit 2); nothing
hangs, nothing in the dataset changes. The fast tests need no backbone; the corpus test runs the real CLI."""

from __future__ import annotations

import pytest

import auditor.runner as runner_module
from tests.e2e.cli_helpers import SAMPLES, run_cli


def _assert_clean_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: ") and lines[1].startswith("Tip: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr and "internal error" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the audit starts: these errors must come before any work."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("the audit started although an output is unusable")

    monkeypatch.setattr(runner_module, "prepare", refuse)


def test_out_that_is_a_file_or_below_one_is_refused_before_any_work(tmp_path, no_work):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    common = ("audit", SAMPLES, "--cache-dir", tmp_path / "c", "-q", "--offline")
    _assert_clean_error(run_cli(*common, "--out", taken), "is a file", "--out")
    _assert_clean_error(run_cli(*common, "--out", taken / "reports"), "lies below", "--out")
    _assert_clean_error(run_cli("audit", SAMPLES, "--cache-dir", taken, "-q"), "cache folder", "--cache-dir")


def test_a_setting_of_the_wrong_type_is_refused_naming_the_key(tmp_path, no_work):
    config = tmp_path / "auditor.toml"
    config.write_text('workers = "two"\n')
    _assert_clean_error(run_cli("audit", SAMPLES, "--config", config, "--cache-dir", tmp_path / "c"),
                        "workers must be a whole number")
    config.write_text("[finetune]\nepochs = 0\n")
    _assert_clean_error(run_cli("audit", SAMPLES, "--config", config, "--cache-dir", tmp_path / "c"),
                        "finetune.epochs must be in")
