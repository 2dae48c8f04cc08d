"""Settings precedence: defaults < settings file < values given, the same for every entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.config import FinetuneOptions
from auditor.errors import ConfigError
from auditor.settings import merge_finetune, resolve


def write_settings(folder: Path, text: str) -> Path:
    (folder / ".git").mkdir(exist_ok=True)  # the repository root: the search for a settings file stops here
    path = folder / "auditor.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path):
    (tmp_path / ".git").mkdir()
    settings = resolve(tmp_path)
    assert settings.source is None
    assert settings.config.calibration_images is None and settings.config.finetune is None


def test_file_overrides_defaults_and_given_overrides_file(tmp_path):
    write_settings(tmp_path, 'calibration_images = 7\nbackbone = "efficientnet-lite0"\nworkers = 3\n')
    from_file = resolve(tmp_path).config
    assert (from_file.calibration_images, from_file.backbone, from_file.workers) == (7, "efficientnet-lite0", 3)
    given = resolve(tmp_path, {"calibration_images": 9}).config
    assert (given.calibration_images, given.backbone, given.workers) == (9, "efficientnet-lite0", 3)


def test_unknown_given_setting_is_an_error(tmp_path):
    (tmp_path / ".git").mkdir()
    with pytest.raises(ConfigError, match="unknown setting"):
        resolve(tmp_path, {"calibraton_images": 3})


def test_finetune_true_in_a_file_enables_the_defaults(tmp_path):
    write_settings(tmp_path, "finetune = true\n")
    assert resolve(tmp_path).config.finetune == FinetuneOptions()


def test_finetune_schedule_from_the_file_with_a_given_field_over_it(tmp_path):
    write_settings(tmp_path, '[finetune]\nschedule = "reference"\n')
    options = resolve(tmp_path, {"finetune": {"epochs": 3}}).config.finetune
    assert (options.schedule, options.learning_rate, options.patience, options.epochs) == ("reference", 5e-6, 10, 3)


def test_finetune_table_merges_with_given_fields(tmp_path):
    write_settings(tmp_path, "[finetune]\nepochs = 5\npatience = 2\n")
    options = resolve(tmp_path, {"finetune": {"patience": 4}}).config.finetune
    assert (options.epochs, options.patience) == (5, 4)


@pytest.mark.parametrize("text, key", [
    ("finetune = 3\n", "finetune"),
    ('[finetune]\nepochs = "many"\n', "finetune.epochs"),
    ("[finetune]\nepoch = 5\n", "finetune.epoch"),
    ("[finetune]\nepochs = 0\n", "finetune.epochs"),
])
def test_bad_finetune_settings_name_the_key(tmp_path, text, key):
    write_settings(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        resolve(tmp_path)
    assert key in error.value.message


def test_finetune_false_turns_the_file_off(tmp_path):
    write_settings(tmp_path, "finetune = true\n")
    assert resolve(tmp_path, {"finetune": False}).config.finetune is None


def test_missing_history_file_is_reported_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="history file .* does not exist"):
        merge_finetune(None, {"history": tmp_path / "nope.log"})
    with pytest.raises(ConfigError, match="history file .* is not a file"):  # a folder: it exists
        merge_finetune(None, {"history": tmp_path})
