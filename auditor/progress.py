"""Progress reporting without printing: computation calls these hooks; only the CLI draws bars."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Protocol


class Task(Protocol):
    def advance(self, amount: int = 1) -> None: ...


class Progress(Protocol):
    def stage(self, description: str, total: int): ...  # a context manager yielding a Task


class _SilentTask:
    def advance(self, amount: int = 1) -> None:
        pass


class SilentProgress:
    @contextmanager
    def stage(self, description: str, total: int) -> Iterator[Task]:
        yield _SilentTask()
