"""Every command honours the settings file, and a flag left at its default never overrides it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import auditor.runner
from auditor.cli import app


CAPTURED = 99  # the exit code of a command stopped where it hands over its config


@pytest.fixture
def captured(monkeypatch):
    """Stop each command where it hands its config to the audit, and keep that config."""
    seen = {}

    def fake(dataset_dir, config, *args, **kwargs):
        seen["config"] = config
        seen["kwargs"] = kwargs
        raise SystemExit(CAPTURED)  # not an Exception: the command's error guard lets it through

    monkeypatch.setattr(auditor.runner, "audit", fake)
    monkeypatch.setattr(auditor.runner, "prepare", fake)
    return seen


def dataset_with_settings(tmp_path: Path, text: str) -> Path:
    (tmp_path / ".git").mkdir()
    data = tmp_path / "data"
    (data / "cat").mkdir(parents=True)
    (data / "auditor.toml").write_text(text)
    return data


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)
    return result


def out_flag(command: str, tmp_path: Path) -> list:
    return [] if command == "embed" else ["--out", tmp_path / "out"]  # embed writes no report


SETTINGS = 'backbone = "efficientnet-lite0"\noffline = true\nworkers = 3\ncalibration_images = 5\nbatch_size = 8\n'


@pytest.mark.parametrize("command", ["audit", "duplicates", "finetune", "embed"])
def test_each_command_reads_the_settings_file(tmp_path, captured, command):
    data = dataset_with_settings(tmp_path, SETTINGS)
    result = invoke(command, data, *out_flag(command, tmp_path))
    assert result.exit_code == CAPTURED, result.output
    config = captured["config"]
    assert (config.backbone, config.offline, config.workers, config.batch_size) == ("efficientnet-lite0", True, 3, 8)
    if command != "embed":
        assert config.calibration_images == 5


@pytest.mark.parametrize("command", ["audit", "duplicates", "finetune", "embed"])
def test_explicit_flags_override_the_file(tmp_path, captured, command):
    data = dataset_with_settings(tmp_path, SETTINGS)
    invoke(command, data, "--workers", "1", "--batch-size", "32", *out_flag(command, tmp_path))
    assert (captured["config"].workers, captured["config"].batch_size) == (1, 32)


def test_duplicates_takes_a_config_file(tmp_path, captured):
    data = dataset_with_settings(tmp_path, "")
    other = tmp_path / "elsewhere.toml"
    other.write_text("max_phash_distance = 3\n")
    invoke("duplicates", data, "--config", other, "--out", tmp_path / "out")
    assert captured["config"].max_phash_distance == 3


def test_finetune_flags_need_the_finetune(tmp_path, captured):
    data = dataset_with_settings(tmp_path, "")
    result = invoke("audit", data, "--epochs", "3", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "--epochs only apply to the fine-tune" in result.output


def test_finetune_enabled_by_the_file_takes_finetune_flags(tmp_path, captured):
    data = dataset_with_settings(tmp_path, "finetune = true\n")
    invoke("audit", data, "--epochs", "3", "--out", tmp_path / "out")
    assert captured["config"].finetune.epochs == 3


def test_finetune_command_switches_it_on(tmp_path, captured):
    data = dataset_with_settings(tmp_path, "")
    invoke("finetune", data, "--train-batch-size", "4", "--finetune-seed", "7", "--out", tmp_path / "out")
    options = captured["config"].finetune
    assert (options.batch_size, options.seed) == (4, 7)


def test_manifest_command_reads_the_settings_file(tmp_path):
    data = dataset_with_settings(tmp_path, "validation_split = 0.5\nseed = 1\n")
    for i in range(4):
        (data / "cat" / f"{i}.jpg").write_bytes(b"x")
    out = tmp_path / "m.csv"
    result = invoke("manifest", data, "-o", out)
    assert result.exit_code == 0, result.output
    rows = out.read_text().splitlines()[1:]
    assert sorted(r.rsplit(",", 1)[1] for r in rows) == ["train", "train", "val", "val"]


def test_out_that_is_a_file_fails_before_any_work(tmp_path, captured):
    data = dataset_with_settings(tmp_path, "")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    for out in (blocker, blocker / "below"):
        result = invoke("audit", data, "--out", out)
        assert result.exit_code == 2 and "error: --out" in result.output
        assert "config" not in captured  # the audit never started


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_nothing_is_written_inside_the_audited_dataset(tmp_path, captured, monkeypatch):
    """A report or cache folder inside the dataset would change it (and the next audit would walk it as a split):
    every such place is refused before any work, the default report folder too when the command runs inside the
    dataset, and nothing is created there."""
    data = dataset_with_settings(tmp_path, "")
    (data / "cat" / "0.jpg").write_bytes(b"x")
    before = _listing(data)
    cases = [("audit", data, "--out", data / "reports"), ("audit", data, "--out", data),
             ("audit", data, "--out", tmp_path / "out", "--cache-dir", data / ".cache"),
             ("embed", data, "--cache-dir", data / "cat" / "cache"),
             ("manifest", data, "-o", data / "m.csv"),
             ("audit", data, "--out", tmp_path / "out", "--baseline", data / "base.json", "--update-baseline"),
             ("audit", tmp_path / "new", "--against", data, "--out", data / "gate")]  # the existing dataset too
    (tmp_path / "new" / "cat").mkdir(parents=True)
    for args in cases:
        result = invoke(*args)
        assert result.exit_code == 2 and "inside the dataset" in result.output and "Tip:" in result.output, args
    monkeypatch.chdir(data)  # `audit .` from inside the dataset: the default reports/<name> lands in it
    result = invoke("audit", ".")
    assert result.exit_code == 2 and "the report folder 'reports/data'" in result.output
    assert "config" not in captured and _listing(data) == before


def test_reports_and_cache_beside_the_dataset_or_in_a_manifests_root_are_allowed(tmp_path, captured):
    data = dataset_with_settings(tmp_path, "")
    result = invoke("audit", data, "--out", tmp_path / "reports", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == CAPTURED, result.output
    (data / "m.csv").write_text("path,label,split\ncat/0.jpg,cat,train\n")  # a manifest's files are only read
    result = invoke("audit", data, "--manifest", data / "m.csv", "--out", data / "reports")
    assert result.exit_code == CAPTURED, result.output


def test_an_interrupt_is_one_line_and_exit_2_and_does_not_promise_a_cache_it_may_not_have():
    from auditor import cli

    def interrupted():
        raise KeyboardInterrupt

    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli._guarded(interrupted) == 2
    assert err.getvalue().count("\n") == 1 and "not with --no-cache" in err.getvalue()
