"""Progress of long steps (corpus synthesis, teacher fine-tuning, the student prior, cache building).

In a terminal a rich progress bar shows counts, elapsed time and time left; anywhere else (CI,
pipes, Ray Job and worker logs) the same progress is a few plain lines, throttled to one every
``every_fraction`` of the total (10 %) or every ``every_s`` seconds, whichever comes first, plus
the last. Plain lines go to ``log`` when given (the callers' existing ``log=`` callbacks) or to
stdout. This follows :mod:`pldistill.sweep.progress` (rich Live in a terminal, plain lines
otherwise) and, like it, imports rich only when a terminal is there. A leaf: it imports no other
pldistill module.

    with StepProgress(120, "teacher fine-tune fold 1", unit="steps", log=log) as bar:
        for batch in batches:
            ...
            bar.advance()

    for clip in track(clips, description="synthesising corpus", unit="clips"):
        ...
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["StepProgress", "track", "format_seconds"]

T = TypeVar("T")


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m07s``, ``1h02m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class StepProgress:
    """Counts ``total`` steps (None: unknown) of one long step; a context manager with :meth:`advance`.

    ``tty`` forces the rich bar (True) or plain lines (False); by default the bar is shown when
    stdout is a terminal. ``enabled=False`` prints nothing. ``clock`` is for tests.
    """

    def __init__(self, total: int | None, description: str, *, unit: str = "", tty: bool | None = None,
                 log: Callable[[str], None] | None = None, every_fraction: float = 0.1, every_s: float = 30.0,
                 enabled: bool = True, console: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total if total is None or total >= 0 else 0
        self.description, self.unit = description, unit
        self.tty = sys.stdout.isatty() if tty is None else tty
        self.enabled = enabled
        self._log = log or (lambda msg: print(msg, flush=True))
        self._every_fraction, self._every_s = every_fraction, every_s
        self._console, self._clock = console, clock
        self.done = 0
        self._start = self._last_time = clock()
        self._last_done = 0
        self._rich: Any = None
        self._task: Any = None

    # -- the two modes ---------------------------------------------------------------------------
    def __enter__(self) -> StepProgress:
        self._start = self._last_time = self._clock()
        if self.enabled and self.tty:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._rich = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn(self.unit), TimeElapsedColumn(), TextColumn("left"),
                                  TimeRemainingColumn(), console=self._console, transient=False)
            self._rich.__enter__()
            self._task = self._rich.add_task(self.description, total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)
            self._rich = None
        elif self.enabled and self.done != self._last_done:
            self._emit()

    def advance(self, n: int = 1) -> None:
        """``n`` more steps are done."""
        self.done += n
        if self._rich is not None:
            self._rich.update(self._task, advance=n)
        elif self.enabled and self._due():
            self._emit()

    # -- plain lines -----------------------------------------------------------------------------
    def _due(self) -> bool:
        if self.total:
            if self.done >= self.total:
                return True
            step = max(1, int(self.total * self._every_fraction))
            if self.done // step > self._last_done // step:
                return True
        return self._clock() - self._last_time >= self._every_s

    def line(self) -> str:
        """The plain line for the current count: ``desc: 30/120 steps (25%), 4s elapsed, ~12s left``."""
        elapsed = self._clock() - self._start
        unit = f" {self.unit}" if self.unit else ""
        if not self.total:
            return f"{self.description}: {self.done}{unit}, {format_seconds(elapsed)} elapsed"
        pct = 100 * self.done / self.total
        left = ""
        if 0 < self.done < self.total:
            left = f", ~{format_seconds(elapsed / self.done * (self.total - self.done))} left"
        return (f"{self.description}: {self.done}/{self.total}{unit} ({pct:.0f}%), "
                f"{format_seconds(elapsed)} elapsed{left}")

    def _emit(self) -> None:
        self._log(self.line())
        self._last_time, self._last_done = self._clock(), self.done


def track(iterable: Iterable[T], total: int | None = None, description: str = "working", **kwargs: Any) -> Iterator[T]:
    """Yield the items of ``iterable``, counting each one done (after the loop body) in a
    :class:`StepProgress`; ``total`` defaults to ``len(iterable)`` when it has one."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with StepProgress(total, description, **kwargs) as bar:
        for item in iterable:
            yield item
            bar.advance()
