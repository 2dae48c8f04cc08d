"""Settings and policy from a file: `[tool.auditor]` in a pyproject.toml, or an auditor.toml.

Precedence: defaults < the file < command-line flags. The file is found next to the dataset (the
dataset folder, then each folder above it up to the repository root), or given with `--config FILE`.

    [tool.auditor]                      # in auditor.toml the same keys sit at the top level
    backbone = "efficientnet-lite0"     # any audit setting (AuditConfig field)
    baseline = "auditor-baseline.json"  # relative to the file

    [tool.auditor.policy.leakage]       # per check id: its thresholds and what each outcome means
    max_percent = 0.0                   # -> Policy.leakage_max_percent
    on_fail = "fail"                    # the status a `fail` outcome is reported as (pass, warn, fail)

    [tool.auditor.policy.near_duplicates]
    max_percent = 1.0
    on_warn = "fail"                    # make near-duplicates block the gate

A per-check key `K` of check `C` names the Policy field `C_K` if there is one, else the field `K`
(`class_balance.max_imbalance_ratio`). Policy fields may also be set flat under `[tool.auditor.policy]`.
Every unknown key and every value of the wrong type is an error that names the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditor.config import GATE_STATUSES, AuditConfig, FinetuneOptions, Policy
from auditor.errors import ConfigError

CONFIG_FILE_NAMES = ("auditor.toml", "pyproject.toml")
STATUS_KEYS = tuple(f"on_{outcome}" for outcome in GATE_STATUSES)
# Settings a file may not carry: they only make sense per run.
NOT_FROM_FILE = {"policy"}
FILE_ONLY_KEYS = ("baseline",)


@dataclass
class FileSettings:
    """What a settings file contributed: AuditConfig overrides, and where they came from."""

    source: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)  # AuditConfig keyword arguments, `policy` included
    baseline: Path | None = None
    origins: dict[str, str] = field(default_factory=dict)  # config key in messages -> key as written in the file


def find_config_file(dataset_dir: Path) -> Path | None:
    """The nearest auditor.toml, or pyproject.toml with a [tool.auditor] table, at or above the dataset."""
    start = Path(dataset_dir).expanduser().resolve()
    folder = start if start.is_dir() else start.parent
    for candidate_dir in (folder, *folder.parents):
        for name in CONFIG_FILE_NAMES:
            candidate = candidate_dir / name
            if candidate.is_file() and (name == "auditor.toml" or _has_tool_auditor(candidate)):
                return candidate
        if (candidate_dir / ".git").exists():  # the repository root: stop here
            break
    return None


def load_settings(dataset_dir: Path, config_file: Path | None = None, overrides: list[str] | None = None) -> FileSettings:
    """Read the settings file (given or found) and `--policy KEY=VALUE` overrides; validate everything."""
    path = Path(config_file).expanduser() if config_file is not None else find_config_file(dataset_dir)
    table: dict[str, Any] = {}
    where = "settings"
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist", "Check the path given to --config.")
        document = _read_toml(path)
        where = path.name
        if path.name == "pyproject.toml" or "tool" in document:
            tool = document.get("tool", {})
            if not isinstance(tool, dict) or "auditor" not in tool:
                raise ConfigError(f"{path} has no [tool.auditor] table",
                                  "Put the settings under [tool.auditor], or in an auditor.toml.")
            table = tool["auditor"]
            where = f"{path.name} [tool.auditor]"
        else:
            table = document
    for text in overrides or []:
        _merge(table, _parse_override(text))
    settings = parse_settings(table, where, base_dir=path.parent if path is not None else Path.cwd())
    settings.source = path
    check_settings(settings)
    return settings


def parse_settings(table: dict[str, Any], where: str = "settings", base_dir: Path | None = None) -> FileSettings:
    """Turn a [tool.auditor] table into AuditConfig overrides. Pure: reads no file."""
    base_dir = base_dir or Path.cwd()
    settings = FileSettings()
    config_fields = {f.name: f for f in dataclasses.fields(AuditConfig) if f.name not in NOT_FROM_FILE}
    for key, value in table.items():
        if key == "policy":
            if not isinstance(value, dict):
                raise _bad(where, "policy", "must be a table", value)
            policy_values, statuses = _parse_policy(value, where, settings.origins)
            policy = Policy(**policy_values, statuses=statuses)
            settings.values["policy"] = policy
        elif key == "baseline":
            settings.baseline = base_dir / _typed(where, key, value, "str")
        elif key == "finetune":
            settings.values["finetune"] = _parse_finetune(where, value, base_dir)
            settings.origins["finetune"] = "finetune"
        elif key in config_fields:
            converted = _typed(where, key, value, str(config_fields[key].type))
            if isinstance(converted, Path) and not converted.is_absolute():
                converted = base_dir / converted
            settings.values[key] = converted
            settings.origins[key] = key
        else:
            raise ConfigError(f"{where}: unknown key {key!r}",
                              f"Known keys: policy, {', '.join(FILE_ONLY_KEYS)}, {', '.join(sorted(config_fields))}.")
    return settings


def check_settings(settings: FileSettings) -> None:
    """Build the config once so bounds are checked now, and name the key as the file wrote it."""
    from auditor.settings import merge_finetune

    try:
        AuditConfig(**{**settings.values, "finetune": merge_finetune(settings.values.get("finetune"), None)})
    except ConfigError as exc:
        source = settings.source.name if settings.source else "settings"
        for config_key, file_key in sorted(settings.origins.items(), key=lambda kv: -len(kv[0])):
            if exc.message.startswith(config_key + " "):
                raise ConfigError(f"{source}: {file_key}{exc.message[len(config_key):]}", exc.tip) from None
        raise ConfigError(f"{source}: {exc.message}", exc.tip) from None


def policy_keys(check_id: str) -> list[str]:
    """The keys `[tool.auditor.policy.<check_id>]` accepts (for messages and the README)."""
    names = [f.name for f in dataclasses.fields(Policy) if f.name != "statuses"]
    keys = [n[len(check_id) + 1:] for n in names if n.startswith(check_id + "_")]
    return sorted(keys) + list(STATUS_KEYS)


def _parse_policy(table: dict[str, Any], where: str, origins: dict[str, str]) -> tuple[dict, dict]:
    policy_fields = {f.name: f for f in dataclasses.fields(Policy) if f.name != "statuses"}
    values: dict[str, Any] = {}
    statuses: dict[str, dict[str, str]] = {}
    for key, value in table.items():
        if key in policy_fields and not isinstance(value, dict):
            values[key] = _typed(where, f"policy.{key}", value, str(policy_fields[key].type))
            origins[f"policy.{key}"] = f"policy.{key}"
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: unknown key 'policy.{key}'",
                              f"Use a table per check id ([policy.leakage]) or a policy field: {', '.join(policy_fields)}.")
        _require_check_id(where, key)
        for sub, sub_value in value.items():
            dotted = f"policy.{key}.{sub}"
            if sub in STATUS_KEYS:
                status = _typed(where, dotted, sub_value, "str")
                if status not in GATE_STATUSES:
                    raise ConfigError(f"{where}: {dotted} must be one of {', '.join(GATE_STATUSES)}; got {status!r}",
                                      f"Set {dotted} to pass, warn or fail.")
                statuses.setdefault(key, {})[sub[3:]] = status
                continue
            target = f"{key}_{sub}" if f"{key}_{sub}" in policy_fields else sub if sub in policy_fields else None
            if target is None:
                raise ConfigError(f"{where}: unknown key {dotted!r}",
                                  f"Keys of policy.{key}: {', '.join(policy_keys(key))}"
                                  + (" (or any policy field)" if key else "") + ".")
            values[target] = _typed(where, dotted, sub_value, str(policy_fields[target].type))
            origins[f"policy.{target}"] = dotted
    return values, statuses


def _parse_finetune(where: str, value: Any, base_dir: Path) -> bool | dict[str, Any]:
    """`finetune = true` (the reference run's defaults) or a `[finetune]` table of FinetuneOptions fields."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, dict):
        raise _bad(where, "finetune", "must be true, false or a table of fine-tune options", value)
    fields = {f.name: f for f in dataclasses.fields(FinetuneOptions)}
    parsed: dict[str, Any] = {}
    for key, sub_value in value.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key 'finetune.{key}'", f"Fine-tune keys: {', '.join(fields)}.")
        converted = _typed(where, f"finetune.{key}", sub_value, str(fields[key].type))
        if isinstance(converted, Path) and not converted.is_absolute():
            converted = base_dir / converted
        parsed[key] = converted
    return parsed


def _require_check_id(where: str, check_id: str) -> None:
    from auditor.checks import CHECKS

    known = [*CHECKS, "merge"]
    if check_id not in known:
        raise ConfigError(f"{where}: unknown check id 'policy.{check_id}'", f"Known check ids: {', '.join(known)}.")


def _typed(where: str, key: str, value: Any, annotation: str) -> Any:
    """Check a TOML value against a dataclass field's annotation (a string: annotations are postponed)."""
    kinds = {part.strip() for part in annotation.split("|")} - {"None"}
    if "bool" in kinds:
        if isinstance(value, bool):
            return value
        raise _bad(where, key, "must be true or false", value)
    if "int" in kinds:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _bad(where, key, "must be a whole number", value)
    if "float" in kinds:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _bad(where, key, "must be a number", value)
    if kinds & {"str", "Path"}:
        if isinstance(value, str):
            return Path(value).expanduser() if "Path" in kinds else value
        raise _bad(where, key, "must be a string", value)
    return value


def _bad(where: str, key: str, expectation: str, value: Any) -> ConfigError:
    return ConfigError(f"{where}: {key} {expectation}; got {value!r}", f"Fix {key} in {where.split()[0]}.")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", "Fix the syntax at the line shown.") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}", "Check the file's permissions.") from None


def _has_tool_auditor(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return "auditor" in tomllib.load(handle).get("tool", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False


def _parse_override(text: str) -> dict[str, Any]:
    """`policy.leakage.max_percent=1` (a TOML value; bare words are strings) -> a nested table."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--policy expects KEY=VALUE; got {text!r}", "For example --policy leakage.max_percent=1.")
    if not key.startswith("policy.") and "." in key or key.split(".")[0] in {c.name for c in dataclasses.fields(Policy)}:
        key = "policy." + key  # `leakage.max_percent=1` and `alpha=0.05` are policy keys
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
