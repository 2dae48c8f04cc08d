"""The settings of one run: defaults < the settings file < values given (command-line flags or API keywords).

Every command and the Python API resolve their settings here, so the settings file is honoured the same
way everywhere. `given` holds AuditConfig keys; the fine-tune may be given as `finetune=True`, a dict of
FinetuneOptions fields, or FinetuneOptions itself, and is merged field by field with the file's.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditor.config import AuditConfig, FinetuneOptions
from auditor.errors import ConfigError

# Command-line spellings that are not AuditConfig keys → how they map.
FINETUNE_FLAG_NAMES = {"train_batch_size": "batch_size", "finetune_seed": "seed", "finetune_schedule": "schedule"}
FINETUNE_FIELDS = {f.name for f in dataclasses.fields(FinetuneOptions)}


@dataclass(frozen=True)
class RunSettings:
    config: AuditConfig
    baseline: Path | None  # from the settings file (a --baseline flag overrides it)
    source: Path | None  # the settings file read, if any


def resolve(dataset_dir: Path, given: dict[str, Any] | None = None, config_file: Path | None = None,
            policy_overrides: list[str] | None = None) -> RunSettings:
    """Read the settings file (given or found next to the dataset), apply `given` over it, validate."""
    from auditor.gate.settings_file import load_settings

    file = load_settings(Path(dataset_dir), config_file, policy_overrides)
    values = dict(file.values)
    given = dict(given or {})
    finetune = merge_finetune(values.pop("finetune", None), given.pop("finetune", None))
    unknown = sorted(set(given) - {f.name for f in dataclasses.fields(AuditConfig)})
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}",
                          f"Known settings: {', '.join(f.name for f in dataclasses.fields(AuditConfig))}.")
    values.update(given)
    values["finetune"] = finetune
    for key in ("cache_dir", "manifest"):
        if values.get(key) is not None:
            values[key] = Path(values[key]).expanduser()
    return RunSettings(config=AuditConfig(**values), baseline=file.baseline, source=file.source)


def merge_finetune(from_file: Any, given: Any) -> FinetuneOptions | None:
    """The fine-tune options: the file's, with the given fields over them. `False` turns it off."""
    if given is False:
        return None
    base = as_finetune_fields(from_file, "settings file: finetune")
    extra = as_finetune_fields(given, "finetune")
    if base is None and extra is None:
        return None
    fields = {**(base or {}), **(extra or {})}
    # The user's training run is parsed now, into the History the checks read: a missing file is said before
    # the embedding and the training, and the result cache keys the run by its values (the config's repr),
    # so an edited log or another History object is never answered from the cache with the old one.
    if fields.get("history") is not None and not isinstance(fields["history"], (str, os.PathLike)):
        from auditor.finetune.history import history_from_keras

        fields["history"] = history_from_keras(fields["history"])  # from Python: model.fit's History
    elif fields.get("history") is not None:
        from auditor.finetune.history import read_history

        path = Path(fields["history"]).expanduser()
        if not path.is_file():
            raise ConfigError(f"history file {str(path)!r} " + ("is not a file" if path.exists() else "does not exist"),
                              "Pass the log Keras printed during fit, a CSVLogger file or a JSON dump of History.history.")
        fields["history"] = read_history(path)
    return FinetuneOptions.with_schedule(**fields)


def as_finetune_fields(value: Any, where: str) -> dict[str, Any] | None:
    """None/False: not requested; True: the defaults; a dict or FinetuneOptions: those fields."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, FinetuneOptions):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        fields = {FINETUNE_FLAG_NAMES.get(k, k): v for k, v in value.items()}
        unknown = sorted(set(fields) - FINETUNE_FIELDS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}",
                              f"Fine-tune keys: {', '.join(sorted(FINETUNE_FIELDS))}.")
        return fields
    raise ConfigError(f"{where} must be true, false or a table of fine-tune options; got {value!r}",
                      "For example finetune = true, or [tool.auditor.finetune] with epochs = 20.")
