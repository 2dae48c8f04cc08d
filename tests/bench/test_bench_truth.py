"""bench/bench_truth.py: how many leaks a row plants."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))


def test_a_zero_rate_plants_nothing_and_any_other_rate_at_least_one():
    from bench_truth import planted_count

    assert planted_count(0.0, 1000) == 0  # the clean row: every flag there is a false alarm
    assert planted_count(0.02, 1000) == 20 and planted_count(0.3, 1000) == 300
    assert planted_count(0.001, 100) == 1  # a tiny rate still plants one
