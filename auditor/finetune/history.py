"""Read the user's own training log: the text Keras prints during `fit`, a `CSVLogger` file, or a
JSON dump of `History.history`. One value per epoch for `loss`, `acc`, `val_loss`, `val_acc`.

A log is untrusted text: nothing here raises on its content. Lines that look like part of the log but
cannot be read (a cut-off metrics line, a value that is not a number, a CSV row of the wrong width)
are skipped and counted in `malformed_lines`; unrelated lines (warnings, prints) are `ignored_lines`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditor.errors import ConfigError

SERIES = ("loss", "acc", "val_loss", "val_acc")
MAX_LOG_BYTES = 64 * 2**20

# Every spelling Keras uses for the accuracy of a classifier, best first.
_ACCURACY_KEYS = ("acc", "accuracy", "categorical_accuracy", "sparse_categorical_accuracy", "binary_accuracy")
_EPOCH_LINE = re.compile(r"^\s*Epoch\s+(\d+)\s*/\s*(\d+)\s*$")
_EPOCH_START = re.compile(r"^\s*Epoch\b")
# "- loss: 0.1234" / "loss: 1.2e-05" / "val_accuracy: nan"; the key may be preceded by "- " or a space.
_PAIR = re.compile(r"(?:^|\s|-)([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([^\s]+)")
_NUMBER = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$|^[-+]?(?:nan|inf|infinity)$", re.IGNORECASE)
_TIMING_KEYS = {"eta", "elapsed", "step", "time"}


@dataclass
class History:
    """Per-epoch series (None where an epoch lacks a value) and how the file was read."""

    loss: list[float | None] = field(default_factory=list)
    acc: list[float | None] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    val_acc: list[float | None] = field(default_factory=list)
    format: str = "unknown"
    source: str = ""
    malformed_lines: int = 0
    ignored_lines: int = 0
    declared_epochs: int | None = None  # N of the last "Epoch k/N" line, when the log says it

    @property
    def epochs(self) -> int:
        return max(len(self.loss), len(self.acc), len(self.val_loss), len(self.val_acc))

    def series(self) -> dict[str, list[float | None]]:
        return {name: list(getattr(self, name)) for name in SERIES}

    def to_dict(self) -> dict[str, Any]:
        return {**self.series(), "epochs": self.epochs, "format": self.format, "source": self.source,
                "malformed_lines": self.malformed_lines, "ignored_lines": self.ignored_lines,
                "declared_epochs": self.declared_epochs}

    def last(self, name: str) -> float | None:
        values = [v for v in getattr(self, name) if v is not None]
        return values[-1] if values else None

    def best(self, name: str) -> float | None:
        values = [v for v in getattr(self, name) if v is not None]
        if not values:
            return None
        return min(values) if name.endswith("loss") else max(values)


def read_history(path: Path) -> History:
    """Parse a training log file. A missing or unreadable file is a ConfigError; its content never is."""
    path = Path(path).expanduser()
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_LOG_BYTES)
    except FileNotFoundError:
        raise ConfigError(f"history file {str(path)!r} does not exist",
                          "Pass the training log Keras printed, a CSVLogger file or a JSON dump of History.history.") from None
    except OSError as exc:
        raise ConfigError(f"cannot read history file {str(path)!r}: {exc.strerror or exc}",
                          "Check the path and its permissions.") from None
    history = parse_history(data.decode("utf-8", errors="replace"))
    history.source = path.name
    return history


def history_from_keras(value: Any) -> History:
    """The `History` that `model.fit(...)` returns (or its `.history` dict of per-epoch lists), read the way
    a JSON dump of it is read. Raises ConfigError when `value` is neither."""
    if isinstance(value, History):
        return value
    mapping = value if isinstance(value, dict) else getattr(value, "history", None)
    if isinstance(mapping, dict) and isinstance(mapping.get("history"), dict):  # {"history": {...}, "params": ...}
        mapping = mapping["history"]
    if not isinstance(mapping, dict):
        raise ConfigError(f"history must be a log file, the History that model.fit returns, or its .history dict; "
                          f"got {type(value).__name__}",
                          "Pass history=model.fit(...), history=h.history, or the path of a training log.")
    history = _from_mapping(mapping, History(format="keras-history", source="History object"))
    params = getattr(value, "params", None)
    if isinstance(params, dict) and isinstance(params.get("epochs"), int) and not isinstance(params["epochs"], bool):
        history.declared_epochs = params["epochs"]
    return history


def parse_history(text: str) -> History:
    """Detect the format (JSON, CSV, Keras text) and parse it."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("{"):
        parsed = _parse_json(stripped)
        if parsed is not None:
            return parsed
    first_line = stripped.split("\n", 1)[0].strip().lower()
    if "," in first_line and first_line.split(",", 1)[0].strip().strip('"') == "epoch":
        return _parse_csv(stripped)
    return _parse_keras_text(text)


# --- JSON -------------------------------------------------------------------------------------

def _parse_json(text: str) -> History | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("history"), dict):  # {"history": {...}, "params": ...}
        data = data["history"]
    return _from_mapping(data, History(format="json"))


def _from_mapping(data: dict[str, Any], history: History) -> History:
    """Columns of per-epoch values (`History.history`), however they were stored, into `history`."""
    columns: dict[str, list[float | None]] = {}
    for key, values in data.items():
        if isinstance(values, dict):  # pandas' DataFrame.to_json(): {"loss": {"0": …, "1": …}}
            try:
                values = [values[k] for k in sorted(values, key=lambda k: int(k))]
            except (TypeError, ValueError):
                history.malformed_lines += 1
                continue
        if hasattr(values, "tolist") and not isinstance(values, (str, bytes)):  # a NumPy array
            values = values.tolist()
        if isinstance(values, tuple):
            values = list(values)
        if not isinstance(values, list):
            history.ignored_lines += 1
            continue
        column = []
        for value in values:
            number = _as_float(value)
            if number is None and value is not None:
                history.malformed_lines += 1
            column.append(number)
        columns[str(key)] = column
    _assign(history, columns)
    return history


# --- CSVLogger ----------------------------------------------------------------------------------

def _parse_csv(text: str) -> History:
    history = History(format="csv")
    header: list[str] | None = None
    rows: list[tuple[int | None, dict[str, float | None]]] = []
    for row in csv.reader(io.StringIO(text)):
        if not row or all(not cell.strip() for cell in row):
            continue
        cells = [cell.strip() for cell in row]
        if cells[0].lower() == "epoch":  # the header (repeated when a run appended to the file)
            header = [c.lower() for c in cells]
            continue
        if header is None or len(cells) != len(header):
            history.malformed_lines += 1
            continue
        values: dict[str, float | None] = {}
        bad = False
        for name, cell in zip(header[1:], cells[1:]):
            number = _as_float(cell) if cell else None
            if number is None and cell:
                bad = True
            values[name] = number
        epoch = _as_int(cells[0])
        if bad or epoch is None:
            history.malformed_lines += 1
            continue
        rows.append((epoch, values))
    names = sorted({name for _epoch, values in rows for name in values})
    _assign(history, {name: [values.get(name) for _epoch, values in rows] for name in names})
    return history


# --- Keras text ---------------------------------------------------------------------------------

def _parse_keras_text(text: str) -> History:
    """`Epoch k/N` starts an epoch; its values are those of the last metrics line before the next one
    (the end-of-epoch line, which alone has `val_…`). Progress-bar redraws (\\r, \\b) are split apart."""
    history = History(format="keras-text")
    epochs: list[dict[str, float | None]] = []
    current: dict[str, float | None] | None = None
    current_has_val = False
    text = re.sub(r"[^\n\r]*\x08+", "\r", text)  # a backspace redraw: keep only what follows it
    for raw in re.split(r"[\r\n]+", text):
        line = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw).strip()  # ANSI colours of some notebooks
        if not line:
            continue
        match = _EPOCH_LINE.match(line)
        if match:
            current = {}
            current_has_val = False
            epochs.append(current)
            history.declared_epochs = int(match.group(2))
            continue
        if _EPOCH_START.match(line):
            history.malformed_lines += 1  # "Epoch 3/" cut off, "Epoch x/10", …
            continue
        if "loss" not in line and "acc" not in line:
            history.ignored_lines += 1
            continue
        values, bad = _metric_pairs(line)
        if bad or not values:
            history.malformed_lines += 1
            continue
        if current is None:  # metrics before any "Epoch" line: an epoch of its own
            current = {}
            epochs.append(current)
        has_val = any(k.startswith("val_") for k in values)
        if has_val or not current_has_val:  # never let a later progress line replace the epoch's final one
            current.clear()
            current.update(values)
            current_has_val = current_has_val or has_val
    epochs = [e for e in epochs if e]
    names = sorted({name for e in epochs for name in e})
    _assign(history, {name: [e.get(name) for e in epochs] for name in names})
    return history


def _metric_pairs(line: str) -> tuple[dict[str, float | None], bool]:
    """The `name: value` pairs of one metrics line; `bad` when a pair's value is not a number."""
    values: dict[str, float | None] = {}
    bad = False
    for key, raw in _PAIR.findall(line):
        if key.lower() in _TIMING_KEYS:
            continue
        raw = raw.rstrip(",;")
        if not _NUMBER.match(raw):
            bad = True
            continue
        values[key] = float(raw)
    if line.rstrip().endswith(":") or re.search(r"[A-Za-z_]\s*:\s*$", line):
        bad = True  # the line was cut off after a key
    return values, bad


# --- shared -------------------------------------------------------------------------------------

def _assign(history: History, columns: dict[str, list[float | None]]) -> None:
    """Map whichever spellings the log used onto loss / acc / val_loss / val_acc."""
    lowered = {k.lower(): v for k, v in columns.items()}
    history.loss = _pick(lowered, ("loss",))
    history.val_loss = _pick(lowered, ("val_loss",))
    history.acc = _pick(lowered, _ACCURACY_KEYS)
    history.val_acc = _pick(lowered, tuple("val_" + k for k in _ACCURACY_KEYS))
    width = max((len(v) for v in (history.loss, history.acc, history.val_loss, history.val_acc)), default=0)
    for name in SERIES:  # every series one value per epoch, None where the log had none
        series = getattr(history, name)
        series.extend([None] * (width - len(series)))


def _pick(columns: dict[str, list[float | None]], keys: tuple[str, ...]) -> list[float | None]:
    for key in keys:
        if key in columns:
            return [_finite(v) for v in columns[key]]
    return []


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):  # also NumPy scalars (np.float32 is not a float)
        return float(value)
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value.strip())
    return None


def _as_int(value: str) -> int | None:
    try:
        return int(float(value))
    except ValueError:
        return None
