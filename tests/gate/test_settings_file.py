"""Settings files: [tool.auditor] / auditor.toml / --policy overrides, with errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.config import AuditConfig, Policy
from auditor.errors import ConfigError
from auditor.gate.settings_file import find_config_file, load_settings, parse_settings


def test_per_check_tables_map_to_policy_fields_and_statuses():
    settings = parse_settings({"backbone": "efficientnet-lite0", "calibration_images": 5,
                               "policy": {"leakage": {"max_percent": 0.5, "on_fail": "warn"},
                                          "near_duplicates": {"max_percent": 2, "on_warn": "fail"},
                                          "class_balance": {"max_imbalance_ratio": 5.0},
                                          "alpha": 0.05}})
    config = AuditConfig(**settings.values)
    assert config.backbone == "efficientnet-lite0" and config.calibration_images == 5
    assert config.policy.leakage_max_percent == 0.5
    assert config.policy.near_duplicates_max_percent == 2.0
    assert config.policy.max_imbalance_ratio == 5.0 and config.policy.alpha == 0.05
    assert config.policy.statuses == {"leakage": {"fail": "warn"}, "near_duplicates": {"warn": "fail"}}
    assert Policy().statuses == {}  # defaults unchanged


@pytest.mark.parametrize("table, needle", [
    ({"policy": {"leakage": {"max_precent": 0}}}, "policy.leakage.max_precent"),
    ({"policy": {"leakage": {"max_percent": "zero"}}}, "policy.leakage.max_percent must be a number"),
    ({"policy": {"leakage": {"on_fail": "explode"}}}, "policy.leakage.on_fail must be one of pass, warn, fail"),
    ({"policy": {"no_such_check": {"max_percent": 1}}}, "policy.no_such_check"),
    ({"policy": {"label_conflicts_max": 1.5}}, "policy.label_conflicts_max must be a whole number"),
    ({"bakcbone": "resnet50"}, "'bakcbone'"),
    ({"offline": "yes"}, "offline must be true or false"),
])
def test_unknown_keys_and_bad_types_name_the_key(table, needle):
    with pytest.raises(ConfigError) as error:
        parse_settings(table, "auditor.toml")
    assert needle in error.value.message
    assert error.value.message.startswith("auditor.toml")


def test_out_of_range_values_name_the_key_as_written_in_the_file(tmp_path):
    (tmp_path / "auditor.toml").write_text("[policy.leakage]\nmax_percent = 150\n")
    with pytest.raises(ConfigError) as error:
        load_settings(tmp_path)
    assert "auditor.toml: policy.leakage.max_percent must be in [0.0, 100.0]; got 150" in error.value.message


def test_pyproject_tool_auditor_is_found_above_the_dataset(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.auditor]\nbaseline = "base.json"\n'
                                             '[tool.auditor.policy.near_duplicates]\non_warn = "fail"\n')
    dataset = tmp_path / "data" / "images"
    dataset.mkdir(parents=True)
    assert find_config_file(dataset) == tmp_path / "pyproject.toml"
    settings = load_settings(dataset)
    assert settings.baseline == tmp_path / "base.json"
    assert settings.values["policy"].statuses == {"near_duplicates": {"warn": "fail"}}


def test_a_pyproject_without_tool_auditor_is_ignored_and_search_stops_at_the_repo_root(tmp_path):
    (tmp_path / "auditor.toml").write_text("calibration_images = 3\n")  # above the repository: not used
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert find_config_file(repo) is None
    assert load_settings(repo).values == {}


def test_policy_flag_overrides_the_file(tmp_path):
    (tmp_path / "auditor.toml").write_text("[policy.leakage]\nmax_percent = 5\n")
    settings = load_settings(tmp_path, overrides=["leakage.max_percent=1", "near_duplicates.on_warn=fail", "alpha=0.2"])
    policy = settings.values["policy"]
    assert policy.leakage_max_percent == 1.0 and policy.alpha == 0.2
    assert policy.statuses == {"near_duplicates": {"warn": "fail"}}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_settings(tmp_path, overrides=["leakage.max_percent"])


def test_invalid_toml_and_missing_file_are_clear_errors(tmp_path):
    bad = tmp_path / "auditor.toml"
    bad.write_text("[policy\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(tmp_path, bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path, tmp_path / "nope.toml")
    other = tmp_path / "pyproject.toml"
    other.write_text('[project]\nname = "x"\n')
    with pytest.raises(ConfigError, match=r"no \[tool.auditor\]"):
        load_settings(tmp_path, other)


def test_paths_in_the_file_are_relative_to_it(tmp_path):
    (tmp_path / "auditor.toml").write_text('cache_dir = "cache"\n')
    assert load_settings(tmp_path).values["cache_dir"] == tmp_path / "cache"
