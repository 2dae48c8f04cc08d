"""The Python API: the audit the command line runs, for notebooks and scripts.

    import auditor
    report = auditor.audit("data/", validation_split=0.2, seed=1337)        # a folder, as `audit DIR …`
    report = auditor.audit_keras(train_ds, val_ds, seed=1337)                # the user's own Keras objects
    report                                                                   # a notebook shows the HTML report
    report.status, report.findings("leakage"), report.save("reports/")

Settings are the command line's (AuditConfig keys as keywords, the settings file found and honoured the
same way: defaults < file < keywords). Nothing here prints, exits or touches the audited files; errors
are the command line's AuditorError subclasses with the same one-line message, its tip added as a note.
Importing this module imports nothing heavy: TensorFlow and friends load when an audit runs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import numbers
import os
import sys
from pathlib import Path
from typing import Any, Callable

from auditor.errors import AuditorError, ConfigError
from auditor.report import Report

# Settings that say how to index a folder: a Keras object already says which file is in which split.
FOLDER_ONLY_SETTINGS = ("layout", "manifest", "validation_split", "split_style")
API_KEYWORDS = ("config_file", "policy", "checks", "baseline", "against", "history", "progress")


def _user_facing(function: Callable) -> Callable:
    """An AuditorError leaves with its tip as a note (shown under the message) and without auditor's inner
    frames: the command line's one line and tip, as Python shows errors. AUDITOR_DEBUG=1 keeps every frame."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as the command line: TensorFlow's C++ chatter off
        try:
            return function(*args, **kwargs)
        except AuditorError as exc:
            if exc.tip and f"Tip: {exc.tip}" not in getattr(exc, "__notes__", []):
                exc.add_note(f"Tip: {exc.tip}")
            if os.environ.get("AUDITOR_DEBUG"):
                raise
            raise exc.with_traceback(None)

    return wrapper


@_user_facing
def audit(path: str | os.PathLike, *, config_file: str | os.PathLike | None = None, policy: Any = None,
          checks: str | list[str] | None = None, baseline: str | os.PathLike | None = None,
          against: str | os.PathLike | None = None, history: Any = None, progress: Any = True,
          **settings: Any) -> Report:
    """Audit the dataset at `path` (a folder, or the root a `manifest=` CSV's paths are relative to).

    settings: any setting of the command line by its Python name, e.g. validation_split=0.2, seed=1337,
        split_style="keras-generator", backbone="efficientnet-lite0", offline=True, cache_dir=…, use_cache=False,
        finetune=True (or a dict of fine-tune options: {"epochs": 20}).
    config_file: the settings file (auditor.toml or pyproject.toml); default: the nearest one at or above `path`.
    policy: a Policy, a dict {"leakage.max_percent": 1, "near_duplicates.on_warn": "fail"}, or --policy strings.
    checks: the check ids to run (default all). baseline: a baseline file (default: the settings file's).
    against: audit `path` as incoming images merged into this existing dataset.
    history: your own training run, `model.fit(...)`'s History (or a log file), shown beside the reference
        fine-tune; needs finetune=True (or finetune in the settings file).
    progress: True (bars in a notebook or a terminal), False, or an object with `stage(description, total)`.
    """
    dataset_dir = _path(path, "path")
    run = _resolve(dataset_dir, settings, config_file, policy, history)
    from auditor.checks import parse_check_ids

    check_ids, bars = parse_check_ids(checks), choose_progress(progress)
    existing = _path(against, "against") if against is not None else None
    from auditor.runner import audit as run_audit

    report, ctx = run_audit(dataset_dir, run.config, bars, check_ids, against=existing,
                            baseline_ids=_baseline_ids(baseline, run.baseline))
    return report.attach(ctx)


@_user_facing
def audit_keras(train: Any, validation: Any = None, test: Any = None, *, config_file: str | os.PathLike | None = None,
                policy: Any = None, checks: str | list[str] | None = None, baseline: str | os.PathLike | None = None,
                history: Any = None, progress: Any = True, **settings: Any) -> Report:
    """Audit exactly the files behind your Keras objects, in their split, with their labels.

    train, validation, test: what `keras.utils.image_dataset_from_directory` returned (a tf.data.Dataset
        with `file_paths` and `class_names`; `subset="both"` gives train and validation), or an iterator
        from `ImageDataGenerator(...).flow_from_directory` / `flow_from_dataframe`. They become the splits
        `train`, `val` and `test` (the names `audit DIR --validation-split` gives), so both reports match.
    seed: pass the seed you gave Keras, so auditor's own sampling uses it as `audit DIR --seed S` does.
    The other keywords are `audit`'s; folder-indexing settings (layout, manifest, validation_split,
    split_style) do not apply.
    """
    misplaced = [key for key in FOLDER_ONLY_SETTINGS if key in settings]
    if misplaced:
        raise ConfigError(f"{', '.join(misplaced)} {'does' if len(misplaced) == 1 else 'do'} not apply to "
                          "audit_keras: the split and the labels come from your Keras objects",
                          "Drop it, or audit the folder itself: auditor.audit(DIR, validation_split=…, seed=…).")
    from auditor.index.from_keras import index_from_keras

    index = index_from_keras({"train": train, "validation": validation, "test": test})
    run = _resolve(index.root, settings, config_file, policy, history)  # the settings file found near the files
    from auditor.checks import parse_check_ids

    check_ids, bars = parse_check_ids(checks), choose_progress(progress)
    if run.config.source_depth:
        _assign_sources(index, run.config.source_depth)
    from auditor.runner import audit as run_audit

    report, ctx = run_audit(index.root, run.config, bars, check_ids,
                            baseline_ids=_baseline_ids(baseline, run.baseline), index=index)
    return report.attach(ctx)


# --- settings -------------------------------------------------------------------------------------


def _resolve(dataset_dir: Path, settings: dict[str, Any], config_file: Any, policy: Any, history: Any):
    """defaults < settings file < keywords, exactly as the command line resolves its flags."""
    from auditor.config import AuditConfig, Policy
    from auditor.settings import resolve

    known = {f.name for f in dataclasses.fields(AuditConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}",
                          f"Settings: {', '.join(sorted(known))}; and {', '.join(API_KEYWORDS)}.")
    given = {key: _typed(key, value, field.type) for key, value in settings.items()
             for field in dataclasses.fields(AuditConfig) if field.name == key}
    overrides: list[str] | None = None
    if isinstance(policy, Policy):
        given["policy"] = policy
    elif policy is not None:
        overrides = _policy_overrides(policy)
    config_path = _path(config_file, "config_file") if config_file is not None else None
    if history is not None:
        given["finetune"] = _with_history(given.get("finetune"), history)
    run = resolve(dataset_dir, given, config_path, overrides)
    if history is not None and "finetune" not in settings:
        bare = resolve(dataset_dir, {}, config_path, overrides)
        if bare.config.finetune is None:
            raise ConfigError("history only applies to the fine-tune", "Add finetune=True.")
    return run


def _with_history(finetune: Any, history: Any) -> Any:
    """`history=` is the fine-tune's `history` option, written where the issue asks for it."""
    from auditor.config import FinetuneOptions

    if finetune is False:
        raise ConfigError("history only applies to the fine-tune, and finetune=False turns it off",
                          "Pass finetune=True with history=.")
    if finetune is None or finetune is True:
        return {"history": history}
    if isinstance(finetune, FinetuneOptions):
        return {**{f.name: getattr(finetune, f.name) for f in dataclasses.fields(finetune)}, "history": history}
    if isinstance(finetune, dict):
        return {**finetune, "history": history}
    return finetune  # resolve() says what is wrong with it


def _typed(key: str, value: Any, annotation: str) -> Any:
    """A keyword's value checked against the setting's type (the command line's parser does this for flags)."""
    kinds = {part.strip() for part in str(annotation).split("|")}
    if value is None and "None" in kinds:
        return None
    if "bool" in kinds:
        if isinstance(value, bool):
            return value
        raise _bad(key, "True or False", value)
    if "int" in kinds:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise _bad(key, "a whole number", value)
    if "float" in kinds:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise _bad(key, "a number", value)
    if "Path" in kinds:
        if isinstance(value, (str, os.PathLike)):
            return Path(value).expanduser()
        raise _bad(key, "a path", value)
    if "str" in kinds:
        if isinstance(value, str):
            return value
        if hasattr(value, "value") and isinstance(value.value, str):  # the command line's enums
            return value.value
        raise _bad(key, "a string", value)
    return value  # finetune, policy: resolve() and AuditConfig check them


def _bad(key: str, expectation: str, value: Any) -> ConfigError:
    return ConfigError(f"{key} must be {expectation}; got {value!r}", f"Pass {key}= as {expectation}.")


def _policy_overrides(policy: Any) -> list[str]:
    """A dict {key: value} (or the command line's KEY=VALUE strings) as `--policy` overrides."""
    if isinstance(policy, str):
        return [policy]
    if isinstance(policy, (list, tuple)) and all(isinstance(p, str) for p in policy):
        return list(policy)
    if isinstance(policy, dict):
        return [f"{key}={_toml_value(key, value)}" for key, value in policy.items()]
    raise ConfigError(f"policy must be a dict, a Policy or KEY=VALUE strings; got {type(policy).__name__}",
                      'For example policy={"leakage.max_percent": 1, "near_duplicates.on_warn": "fail"}.')


def _toml_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    raise ConfigError(f"policy {key}: {value!r} is not a number, true/false or a string", "Pass a plain value.")


def _baseline_ids(baseline: Any, from_file: Path | None) -> set[str] | None:
    path = _path(baseline, "baseline") if baseline is not None else from_file
    if path is None:
        return None
    from auditor.gate.baseline import load_baseline

    return load_baseline(path)


def _path(value: Any, name: str) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{name} must be a path; got {type(value).__name__}", f"Pass {name} as a str or pathlib.Path.")
    return Path(value).expanduser()


def _assign_sources(index, depth: int) -> None:
    """source_depth for Keras objects: the folders below each file's class folder, when paths start with it."""
    from pathlib import PurePosixPath

    from auditor.index.dataset import assign_sources

    if not all(PurePosixPath(r.path).parts[0] == r.label for r in index.records):
        raise ConfigError("source_depth needs every file below a class folder of the same root",
                          "Drop source_depth, or put each image's source in a manifest's source column.")
    assign_sources(index, depth, class_level=0)


# --- progress and errors --------------------------------------------------------------------------


def choose_progress(progress: Any, in_notebook: bool | None = None, stderr_is_terminal: bool | None = None):
    """True: text bars in a notebook (redrawn in place, no widget library needed), rich bars in a terminal,
    nothing when stderr is a log file. False/None: nothing. Anything with `stage(description, total)`: that."""
    from auditor.progress import SilentProgress

    if progress is None or progress is False:
        return SilentProgress()
    if progress is not True:
        if callable(getattr(progress, "stage", None)):
            return progress
        raise ConfigError(f"progress must be True, False or a Progress; got {type(progress).__name__}",
                          "Pass progress=False to turn the bars off.")
    if in_notebook is None:
        in_notebook = "ipykernel" in sys.modules  # Jupyter, VS Code and Colab all run one
    if stderr_is_terminal is None:
        stderr_is_terminal = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if in_notebook and not stderr_is_terminal:
        from auditor.text_progress import TextProgress

        return TextProgress()
    if stderr_is_terminal:
        from auditor.rich_progress import RichProgress

        return RichProgress()
    return SilentProgress()
