"""Wall and CPU time of named functions, measured where the main thread calls them (`bench_scale.py --steps`).

A function is replaced on its module (or class) by a wrapper that adds up the wall and process CPU time of each call
made on the main thread; calls on other threads (blocks run on every core) pass straight through, their time counted
in the caller's. A module that imported the function by name keeps its own reference: list it as that module's too.
Nested timed functions count in both, so the table is not a partition."""

from __future__ import annotations

import functools
import importlib
import threading
import time

# The duplicate decision's steps: where its time went at 10⁶ (docs/scale.md, forty-second session).
DECISION_STEPS = (
    ("auditor.similarity.engine", "decide"),
    ("auditor.similarity.evidence", "make_dataset"),
    ("auditor.similarity.crowds", "crowd_backgrounds"),
    ("auditor.similarity.crowds", "_crowd_gaps"),
    ("auditor.similarity.crowds", "_closed"),
    ("auditor.similarity.crowds", "_sink_sizes"),
    ("auditor.similarity.evidence", "search"),
    ("auditor.similarity.evidence", "_hamming_matches"),
    ("auditor.similarity.evidence", "merge_sightings"),
    ("auditor.similarity.neighbours", "paired_cosines"),
    ("auditor.similarity.engine", "paired_cosines"),
    ("auditor.similarity.evidence", "pair_correlation"),
    ("auditor.similarity.evidence", "unordered"),
    ("auditor.similarity.evidence", "_query_codes"),
    ("auditor.similarity.evidence", "relate_to_backgrounds"),
)


class StepTimers:
    def __init__(self) -> None:
        self.totals: dict[str, list[float]] = {}  # "module:function" → [wall s, CPU s, calls]

    def wrap(self, module_name: str, function_name: str) -> None:
        module = importlib.import_module(module_name)
        original = getattr(module, function_name)
        key = f"{module_name.rsplit('.', 1)[-1]}:{function_name}"
        totals = self.totals.setdefault(key, [0.0, 0.0, 0])

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if threading.current_thread() is not threading.main_thread():
                return original(*args, **kwargs)
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                totals[0] += time.perf_counter() - wall
                totals[1] += time.process_time() - cpu
                totals[2] += 1

        setattr(module, function_name, timed)

    def table(self) -> str:
        rows = ["| step (its main-thread calls in the whole run; nested steps count in both) | wall s | CPU s | calls |",
                "|---|---:|---:|---:|"]
        for key, (wall, cpu, calls) in sorted(self.totals.items(), key=lambda item: -item[1][0]):
            if calls:
                rows.append(f"| {key} | {wall:.2f} | {cpu:.2f} | {calls} |")
        return "\n".join(rows)


def decision_timers() -> StepTimers:
    timers = StepTimers()
    for module_name, function_name in DECISION_STEPS:
        timers.wrap(module_name, function_name)
    return timers
