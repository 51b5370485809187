"""The one writer of the trials table: a Tune callback in the launching process.

Tune knows every trial's fate (started, each result, completed, stopped by the scheduler,
failed), even when it kills a trial's processes; a writer inside the trial cannot know that.
Rows are rewritten as the trial goes (idempotent per trial id):

- ``running`` at start, refreshed with the best-so-far figures at each result;
- ``completed`` when the last report carries the whole trial result;
- ``pruned`` when Tune ends the trial without it (ASHA stopped it), with the best figures so far;
- ``failed`` on error, with the root cause first and the trace after it.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ray.tune import Callback

from pldistill.config import METRIC_NAMES
from pldistill.results.status import COMPLETED, FAILED, PRUNED, RUNNING

__all__ = ["TrialRecorder", "DiskFullGuard", "error_summary", "ended_as"]

#: How a trial's error text says its disk was full (an OSError, or pldistill's own DiskFullError).
_DISK_FULL = re.compile(r"no space left on device|\[Errno 28\]", re.IGNORECASE)
_ERROR_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Interrupt)):\s*(.+)$")


def error_summary(text: str) -> str:
    """The most specific ``SomeError: message`` line of a trace (the root cause is raised last)."""
    # ``pkg.module.SomeError: message`` reads as ``SomeError: message``
    lines = [f"{m.group(1).rsplit('.', 1)[-1]}: {m.group(3).strip()}" for m in map(_ERROR_LINE.match, text.splitlines())
             if m]
    generic = ("TrainingFailedError", "RayTaskError", "TuneError", "ActorDiedError", "WorkerGroupError")
    specific = [ln for ln in lines if not any(g in ln.split(":")[0] for g in generic)]
    pick = specific[-1] if specific else (lines[-1] if lines else (text.strip().splitlines() or ["error"])[-1])
    return pick[:500]


def ended_as(trial) -> str:
    """How a trial Tune has ended stands: failed on error, completed when its last report carries the
    whole trial result (``trial_result``), pruned otherwise (the scheduler stopped it early)."""
    if trial.status == "ERROR":
        return FAILED
    return COMPLETED if "trial_result" in (trial.last_result or {}) else PRUNED


class TrialRecorder(Callback):
    def __init__(self, sweep: Any, results_root: Path) -> None:
        self.sweep = sweep
        self.root = Path(results_root)
        self._base: dict[str, dict[str, Any]] = {}
        self._finished: set[str] = set()

    def _store(self):
        from pldistill.results import ResultsStore

        return ResultsStore(self.root, self.sweep.name)

    def _base_values(self, trial) -> dict[str, Any]:
        if trial.trial_id not in self._base:
            from pldistill.sweep.space import hparams_of, resolve_trial_config

            cfg = resolve_trial_config(self.sweep, trial.config, trial_id=trial.trial_id)
            self._base[trial.trial_id] = dict(
                trial_id=trial.trial_id, hparams=hparams_of(cfg), objective=cfg.hparams.objective,
                student_family=cfg.student_family,
                dataset=cfg.data.dataset, folds=list(cfg.data.folds),
                num_workers=self.sweep.resources.workers_per_trial, config_json=cfg.to_json(),
                started_at=datetime.now(timezone.utc))
        return self._base[trial.trial_id]

    def _write(self, trial, status: str, result: dict[str, Any] | None = None, **extra: Any) -> None:
        from pldistill.results import TrialRecord

        base = {**self._base_values(trial), **extra}
        result = result or {}
        if "trial_result" in result:
            payload = json.loads(result["trial_result"])
            record = TrialRecord.from_result(payload, status=status, nodes=_nodes(result), **base)
        else:
            losses = {k[5:]: v for k, v in result.items() if k.startswith("loss_") and isinstance(v, (int, float))}
            record = TrialRecord(status=status, best_epoch=result.get("best_epoch"), losses=losses,
                                 nodes=_nodes(result), **{m: result.get(m) for m in METRIC_NAMES},
                                 **{f"teacher_{m}": result.get(f"teacher_{m}") for m in METRIC_NAMES}, **base)
        self._store().write_trial(record)

    # -- Tune hooks --------------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._finished.discard(trial.trial_id)
        self._write(trial, RUNNING)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info: Any) -> None:
        if "trial_result" in result:
            self._finished.add(trial.trial_id)
            self._write(trial, COMPLETED, result, ended_at=datetime.now(timezone.utc))
        else:
            self._write(trial, RUNNING, result)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        if trial.trial_id not in self._finished:  # ended by the scheduler before its last epoch
            self._write(trial, PRUNED, trial.last_result, ended_at=datetime.now(timezone.utc))

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        text = _error_text(trial)
        self._write(trial, FAILED, trial.last_result, ended_at=datetime.now(timezone.utc),
                    error=(error_summary(text) + "\n" + text)[-8000:])

    def record_final(self, trial) -> None:
        """The final row of a trial Tune finished while no recorder was listening (resume)."""
        outcome = ended_as(trial)
        if outcome == FAILED:
            self.on_trial_error(0, [], trial)
        else:
            self._write(trial, outcome, trial.last_result)


class DiskFullGuard(Callback):
    """Stops the sweep at the first trial that failed for a full disk, before Tune retries it (every
    retry, and every other trial, would fail the same way): raising here ends ``Tuner.fit``, as a
    killed launcher would, so the trial resumes from its last checkpoint once there is room."""

    def __init__(self, results: Path) -> None:
        self.results = Path(results)

    def _check(self, trial) -> None:
        from pldistill.errors import DiskFullError

        text = _error_text(trial)
        if _DISK_FULL.search(text):
            # the file: "<path>: no space left on device" (DiskFullError), "...device: '<path>'" (OSError)
            match = (re.search(r"(/[^\s'\"]+): no space left on device", text, re.IGNORECASE)
                     or re.search(r"no space left on device: '(/[^']+)'", text, re.IGNORECASE))
            raise DiskFullError(match.group(1) if match else self.results)

    def on_trial_recover(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._check(trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._check(trial)


def _error_text(trial) -> str:
    """Tune writes ``error.txt`` in the trial's local folder before calling back; the storage copy
    (``get_error``) is synced later."""
    path = trial.error_file
    if path and Path(path).is_file():
        return Path(path).read_text(errors="replace")
    text = trial.get_error()
    return str(text) if text else "unknown error (Tune recorded no error text)"


def _nodes(result: dict[str, Any]) -> list[str]:
    raw = result.get("nodes")
    return list(json.loads(raw)) if isinstance(raw, str) else []
