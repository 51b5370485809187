"""Live sweep progress: trials done / running / failed and the best so far.

A Ray Tune ``Callback`` feeding a rich ``Live`` panel in a terminal; in a pipe (CI, Ray Job logs)
it prints one plain line per finished trial instead.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from ray.tune import Callback

__all__ = ["SweepProgress"]


class SweepProgress(Callback):
    def __init__(self, total: int | None, metric: str, mode: str, console=None, enabled: bool = True) -> None:
        self.total, self.metric, self.mode = total, metric, mode
        self.enabled = enabled
        self.running: set[str] = set()
        self.done = 0
        self.failed = 0
        self.best: tuple[float, str, dict[str, Any]] | None = None
        self._console = console
        self._live = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state; the console and Live hold locks.
        state = dict(self.__dict__)
        state["_console"] = state["_live"] = None
        return state

    # -- rendering -----------------------------------------------------------------------------
    def _line(self) -> str:
        total = f"/{self.total}" if self.total else ""
        best = "-" if self.best is None else f"{self.best[0]:.4f} ({self.best[1]})"
        return (f"trials: {self.done}{total} done, {len(self.running)} running, {self.failed} failed"
                f" | best {self.metric} ({self.mode}): {best}")

    def _refresh(self) -> None:
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text(self._line()))

    def _plain(self, msg: str) -> None:
        if self.enabled and self._live is None:
            print(msg, flush=True)

    def __enter__(self) -> SweepProgress:
        if self.enabled and sys.stdout.isatty():
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            self._live = Live(Text(self._line()), console=self._console or Console(), refresh_per_second=2)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
        self._plain(self._line())

    # -- Tune callback hooks -------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self.running.add(trial.trial_id)
        self._refresh()

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info: Any) -> None:
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            better = self.best is None or (value > self.best[0] if self.mode == "max" else value < self.best[0])
            if better:
                self.best = (float(value), trial.trial_id, dict(trial.config))
        self._refresh()

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.done += 1
        self._refresh()
        self._plain(f"trial {trial.trial_id} completed | {self._line()}")

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.failed += 1
        self._refresh()
        self._plain(f"trial {trial.trial_id} FAILED | {self._line()}")
