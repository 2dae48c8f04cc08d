"""auditor.audit / audit_keras before any image is read: the settings resolved as the command line resolves
them, errors as the command line's (same class, same one line, the tip as a note), progress chosen per place."""

from __future__ import annotations

import io
import traceback
from pathlib import Path

import pytest

import auditor
from auditor.api import _resolve, choose_progress
from auditor.config import FinetuneOptions, Policy
from auditor.errors import ConfigError, DatasetError
from auditor.progress import SilentProgress
from auditor.text_progress import TextProgress
from tests.e2e.cli_helpers import run_cli


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "data"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        (root / label / "x.jpg").write_bytes(b"\xff\xd8")
    return root


def test_a_missing_folder_is_the_clis_error_with_its_tip(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as caught:
        auditor.audit(missing)
    cli = run_cli("audit", missing, "-q")
    assert cli.exit_code == 2
    assert f"error: {caught.value}" in cli.stderr and f"Tip: {caught.value.tip}" in cli.stderr
    assert str(caught.value) == f"dataset directory {str(missing)!r} does not exist"  # one line, as the CLI's
    assert caught.value.__notes__ == [f"Tip: {caught.value.tip}"]
    shown = "".join(traceback.format_exception(caught.value))
    assert "Tip: Check the path" in shown
    frames = traceback.extract_tb(caught.value.__traceback__)
    assert [Path(f.filename).name for f in frames] == ["test_api_settings.py", "api.py"]  # no inner frames


def test_auditor_debug_keeps_every_frame(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITOR_DEBUG", "1")
    with pytest.raises(DatasetError) as caught:
        auditor.audit(tmp_path / "nowhere")
    assert "dataset.py" in {Path(f.filename).name for f in traceback.extract_tb(caught.value.__traceback__)}


def test_keywords_are_checked_like_flags(dataset):
    with pytest.raises(ConfigError, match="unknown setting\\(s\\): sead") as caught:
        auditor.audit(dataset, sead=1)
    assert "seed" in caught.value.tip and "config_file" in caught.value.tip
    with pytest.raises(ConfigError, match="seed must be a whole number; got '7'"):
        auditor.audit(dataset, seed="7")
    with pytest.raises(ConfigError, match="offline must be True or False"):
        auditor.audit(dataset, offline="yes")
    with pytest.raises(ConfigError, match="backbone must be one of auto, resnet50, efficientnet-lite0"):
        auditor.audit(dataset, backbone="vgg")
    with pytest.raises(ConfigError, match="unknown check id\\(s\\): leakge"):  # said before any image is read
        auditor.audit(dataset, checks="leakge", progress=RefuseWork())


class RefuseWork:
    """A progress that fails the test if any stage of work starts."""

    def stage(self, description, total):
        raise AssertionError(f"work started: {description}")


def test_folder_settings_do_not_apply_to_keras_objects():
    with pytest.raises(ConfigError, match="validation_split, split_style do not apply to audit_keras"):
        auditor.audit_keras(object(), validation_split=0.2, split_style="keras-dataset")
    with pytest.raises(DatasetError, match="a object is not a Keras dataset of image files"):
        auditor.audit_keras(object())


def test_settings_file_then_keywords(dataset):
    (dataset / "auditor.toml").write_text('min_side = 50\nseed = 3\n[policy.leakage]\nmax_percent = 2.0\n')
    run = _resolve(dataset, {}, None, None, None)
    assert (run.config.min_side, run.config.seed, run.config.policy.leakage_max_percent) == (50, 3, 2.0)
    assert run.source == dataset / "auditor.toml"
    run = _resolve(dataset, {"seed": 9, "cache_dir": "~/c"}, None, {"near_duplicates.on_warn": "fail", "alpha": 0.05}, None)
    assert (run.config.min_side, run.config.seed) == (50, 9)
    assert run.config.cache_dir == Path("~/c").expanduser()
    assert run.config.policy.leakage_max_percent == 2.0 and run.config.policy.alpha == 0.05  # merged with the file's
    assert run.config.policy.statuses == {"near_duplicates": {"warn": "fail"}}
    assert _resolve(dataset, {}, None, Policy(alpha=0.2), None).config.policy.leakage_max_percent == 0.0  # replaces
    other = dataset.parent / "other.toml"
    other.write_text("min_side = 12\n")
    assert _resolve(dataset, {}, other, None, None).config.min_side == 12
    with pytest.raises(ConfigError, match="policy must be a dict"):
        _resolve(dataset, {}, None, 3, None)


def test_history_needs_the_finetune(dataset):
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.9]}
    with pytest.raises(ConfigError, match="history only applies to the fine-tune") as caught:
        _resolve(dataset, {}, None, None, history)
    assert caught.value.tip == "Add finetune=True."
    run = _resolve(dataset, {"finetune": True}, None, None, history)
    assert run.config.finetune.history.loss == [1.0, 0.5]
    run = _resolve(dataset, {"finetune": {"epochs": 3}}, None, None, history)
    assert run.config.finetune.epochs == 3 and run.config.finetune.history.val_loss == [1.1, 0.9]
    run = _resolve(dataset, {"finetune": FinetuneOptions(patience=2)}, None, None, history)
    assert run.config.finetune.patience == 2 and run.config.finetune.history.epochs == 2
    (dataset / "auditor.toml").write_text("finetune = true\n")
    assert _resolve(dataset, {}, None, None, history).config.finetune.history.epochs == 2  # the file enables it
    with pytest.raises(ConfigError, match="finetune=False turns it off"):
        _resolve(dataset, {"finetune": False}, None, None, history)


def test_progress_choice():
    assert isinstance(choose_progress(False), SilentProgress) and isinstance(choose_progress(None), SilentProgress)
    assert isinstance(choose_progress(True, in_notebook=True, stderr_is_terminal=False), TextProgress)
    assert type(choose_progress(True, in_notebook=False, stderr_is_terminal=True)).__name__ == "RichProgress"
    assert isinstance(choose_progress(True, in_notebook=False, stderr_is_terminal=False), SilentProgress)  # a log file
    mine = TextProgress(io.StringIO())
    assert choose_progress(mine) is mine
    with pytest.raises(ConfigError, match="progress must be True, False or a Progress"):
        choose_progress("yes")


def test_text_progress_redraws_one_line(monkeypatch):
    import auditor.text_progress as text_progress

    clock = iter(range(0, 1000))
    monkeypatch.setattr(text_progress.time, "monotonic", lambda: next(clock) * 0.1)
    stream = io.StringIO()
    with TextProgress(stream).stage("embedding", 10) as task:
        for _ in range(10):
            task.advance()
    written = stream.getvalue()
    assert written.startswith("\rembedding [" + "." * 30 + "] 0/10")
    assert written.count("\n") == 1 and written.endswith("\n")
    redraws = written.count("\r")
    assert 2 <= redraws < 10  # the first draw, some redraws (at most one per 0.2 s), the last
    assert "[" + "=" * 30 + "] 10/10" in written
