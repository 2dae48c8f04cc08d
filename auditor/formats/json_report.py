"""The JSON report (schema_version 1, documented in the README)."""

from __future__ import annotations

import json
import math
from typing import Any

from auditor.report import Report


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
    return json.dumps(plain(report.to_dict()), indent=2, ensure_ascii=False) + "\n"
