"""Live sweep progress: trials completed / pruned / failed / running and the best so far.

A Ray Tune ``Callback`` feeding a rich ``Live`` panel in a terminal; in a pipe (CI, Ray Job logs)
it prints one plain line per finished trial instead. Its words are ``status``'s
(:mod:`pldistill.results.status`) and its best is ``best``'s: the best completed trial by the
sweep's metric, ties broken by :func:`pldistill.results.query.rank_key`.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from ray.tune import Callback

from pldistill.results.query import rank_key
from pldistill.results.status import COMPLETED, FAILED, PRUNED, RUNNING, TRIAL_STATUSES, describe_counts

__all__ = ["SweepProgress"]


class SweepProgress(Callback):
    def __init__(self, total: int | None, metric: str, mode: str, console=None, enabled: bool = True) -> None:
        self.total, self.metric, self.mode = total, metric, mode
        self.enabled = enabled
        self.running: set[str] = set()
        self.ended: dict[str, int] = dict.fromkeys(TRIAL_STATUSES, 0)
        self.best: tuple[float, str] | None = None
        self._final: dict[str, str] = {}  # trial id -> its whole result (JSON), until it ends
        self._console = console
        self._live = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state; the console and Live hold locks.
        state = dict(self.__dict__)
        state["_console"] = state["_live"] = None
        return state

    # -- rendering -----------------------------------------------------------------------------
    def _line(self) -> str:
        total = f" of {self.total}" if self.total else ""
        best = "-" if self.best is None else f"{self.best[0]:.4f} ({self.best[1]})"
        return (f"trials{total}: {describe_counts({**self.ended, RUNNING: len(self.running)})}"
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
        if "trial_result" in result:  # its last report: the trial ran every epoch (as the recorder decides)
            self._final[trial.trial_id] = result["trial_result"]

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._ended(trial, COMPLETED if trial.trial_id in self._final else PRUNED)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._ended(trial, FAILED)

    def _ended(self, trial, outcome: str) -> None:
        self.running.discard(trial.trial_id)
        self.ended[outcome] += 1
        if outcome == COMPLETED:
            self._consider(trial.trial_id, self._final.pop(trial.trial_id))
        self._refresh()
        self._plain(f"trial {trial.trial_id} {outcome} | {self._line()}")

    def _consider(self, trial_id: str, trial_result: str) -> None:
        """A completed trial's figure as the results table records it (from the trial's whole result); the
        best is the trial ``best`` would name."""
        value = json.loads(trial_result).get("metrics", {}).get(self.metric)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        if self.best is None or rank_key(value, trial_id, self.mode) < rank_key(*self.best, self.mode):
            self.best = (float(value), trial_id)
