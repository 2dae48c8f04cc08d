"""The JSON report (schema_version 1, documented in the README).

Names are kept exactly: JSON escapes control characters, and a name that is not UTF-8 is written with
the surrogate escapes os.fsdecode gives it (`\\udcff`), see auditor.text.json_text."""

from __future__ import annotations

import math
from typing import Any

from auditor.report import Report
from auditor.text import json_text


def plain(value: Any) -> Any:
    """JSON has no NaN or numpy types: turn them into null and plain numbers."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def render_json(report: Report) -> str:
    return json_text(plain(report.to_dict())) + "\n"
