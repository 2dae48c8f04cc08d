"""Rich progress bars on stderr (the report owns stdout)."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class _RichTask:
    def __init__(self, progress: Progress, task_id):
        self._progress, self._task_id = progress, task_id

    def advance(self, amount: int = 1) -> None:
        self._progress.advance(self._task_id, amount)


class RichProgress:
    def __init__(self) -> None:
        self._console = Console(stderr=True)

    @contextmanager
    def stage(self, description: str, total: int):
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.speed}"),
            TimeRemainingColumn(), console=self._console, transient=True,
        ) as progress:
            task_id = progress.add_task(description, total=total)
            yield _RichTask(progress, task_id)
