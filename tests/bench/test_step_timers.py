"""bench/step_timers.py: the time of named functions, counted on the main thread only, their results unchanged."""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))


def test_a_timed_function_returns_what_it_did_and_counts_main_thread_calls_only(monkeypatch):
    from step_timers import DECISION_STEPS, StepTimers

    module = types.ModuleType("timed_example")
    module.twice = lambda x: 2 * x
    monkeypatch.setitem(sys.modules, "timed_example", module)
    timers = StepTimers()
    timers.wrap("timed_example", "twice")
    assert module.twice(21) == 42 and module.twice(x=1) == 2
    other = threading.Thread(target=module.twice, args=(5,))
    other.start()
    other.join()
    wall, cpu, calls = timers.totals["timed_example:twice"]
    assert calls == 2 and wall >= 0 and cpu >= 0
    assert "| timed_example:twice |" in timers.table()
    import importlib

    for module_name, function_name in DECISION_STEPS:  # every step names a function that exists
        assert callable(getattr(importlib.import_module(module_name), function_name))
