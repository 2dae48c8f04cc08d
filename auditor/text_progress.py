"""Progress bars as plain text lines redrawn with a carriage return: what Keras' own `fit` prints, and what
every notebook front end (Jupyter, VS Code, Colab) redraws in place without any widget library."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterator, TextIO

BAR_WIDTH = 30
REDRAW_EVERY_S = 0.2  # a notebook keeps every write; redrawing on each image would flood it


class _TextTask:
    def __init__(self, bar: "_Bar") -> None:
        self._bar = bar

    def advance(self, amount: int = 1) -> None:
        self._bar.done += amount
        self._bar.draw()


class _Bar:
    def __init__(self, stream: TextIO, description: str, total: int) -> None:
        self.stream, self.description, self.total = stream, description, max(0, int(total))
        self.done = 0
        self.started = self.last_drawn = time.monotonic()

    def draw(self, final: bool = False, force: bool = False) -> None:
        now = time.monotonic()
        if not (final or force) and now - self.last_drawn < REDRAW_EVERY_S:
            return
        self.last_drawn = now
        self.stream.write("\r" + self.line(now) + ("\n" if final else ""))
        self.stream.flush()

    def line(self, now: float) -> str:
        total = self.total or 1
        filled = min(BAR_WIDTH, int(BAR_WIDTH * self.done / total))
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        return (f"{self.description} [{'=' * filled}{'.' * (BAR_WIDTH - filled)}] {self.done}/{self.total}"
                f" {elapsed:.0f}s ({rate:.1f}/s)")


class TextProgress:
    """Implements auditor.progress.Progress on a text stream (stderr by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    @contextmanager
    def stage(self, description: str, total: int) -> Iterator[_TextTask]:
        bar = _Bar(self._stream or sys.stderr, description, total)
        bar.draw(force=True)
        try:
            yield _TextTask(bar)
        finally:
            bar.draw(final=True)
