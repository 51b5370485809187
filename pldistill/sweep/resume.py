"""Continuing an interrupted sweep without losing or repeating a trial.

Ray Tune snapshots the experiment (trials, searcher and scheduler state) every ~10 s and
``Tuner.restore`` continues from the snapshot; Ray Train restarts each unfinished trial from its
latest epoch checkpoint. What Tune cannot know is the results table, which pldistill writes as
trials go. Between the last snapshot and the kill both can disagree, so before and after a resumed
run the table is brought in line with Tune's trials (:func:`reconcile`):

- a row whose trial Tune does not know (started after the last snapshot; Tune will suggest its
  successor again) is removed, so the sweep ends with exactly ``num_samples`` rows;
- a trial Tune has finished whose row is not final (the launcher died before writing it) gets its
  final row from Tune's last result.

Rows are one file per trial id, so nothing is ever written twice. A lock file held by the launching
process keeps a second launcher off a sweep that is running; the OS drops it when that process dies,
however it dies.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any

from pldistill.errors import PldistillError

__all__ = ["SweepLock", "experiment_dir", "can_resume", "reconcile", "SweepBusyError"]

_LOCK_FILE = ".launch.lock"


class SweepBusyError(PldistillError):
    """Another process is running this sweep."""


def experiment_dir(results: Path, name: str) -> Path:
    """Where Tune keeps the sweep's experiment state (``RunConfig(storage_path, name)``)."""
    return Path(results) / name / "ray-tune" / name


def can_resume(results: Path, name: str) -> bool:
    """Whether an earlier run left a Tune experiment that ``Tuner.restore`` can continue."""
    from ray import tune

    path = experiment_dir(results, name)
    return path.is_dir() and tune.Tuner.can_restore(str(path))


class SweepLock:
    """An exclusive ``flock`` on ``<results>/<name>/.launch.lock`` for the life of the launcher."""

    def __init__(self, sweep_dir: Path) -> None:
        self.path = Path(sweep_dir) / _LOCK_FILE
        self._lock: AbstractContextManager[IO[str]] | None = None

    def __enter__(self) -> SweepLock:
        from pldistill._fs import file_lock

        self._lock = file_lock(self.path, blocking=False, holder=f"pid {os.getpid()}")
        try:
            self._lock.__enter__()
        except BlockingIOError:
            holder = self.path.read_text().strip() or "another process"
            raise SweepBusyError(f"sweep at {self.path.parent} is being run by {holder}; wait for it or stop it "
                                 "first") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None


def tune_trials(results: Path, name: str) -> list[Any]:
    """Tune's trials as of its latest experiment snapshot (``ray.tune.ExperimentAnalysis``)."""
    from ray.tune import ExperimentAnalysis

    return list(ExperimentAnalysis(str(experiment_dir(results, name))).trials)


def reconcile(store: Any, recorder: Any, trials: list[Any]) -> dict[str, int]:
    """Make the results table agree with Tune's ``trials``; returns what was removed and completed."""
    from pldistill.results import read_trials

    known = {t.trial_id: t for t in trials}
    removed = finished = 0
    table = read_trials(store.root, sweep=store.sweep) if store.sweep_dir.joinpath("trials").is_dir() else None
    rows = {r["trial_id"]: r for r in table.to_pylist()} if table is not None else {}
    for trial_id in set(rows) - set(known):
        for path in (store.trial_path(trial_id), store.epochs_path(trial_id)):
            path.unlink(missing_ok=True)
        removed += 1
    for trial_id, trial in known.items():
        status = rows.get(trial_id, {}).get("status")
        if trial.status in ("TERMINATED", "ERROR") and status not in ("completed", "pruned", "failed"):
            recorder.record_final(trial)
            finished += 1
    return {"removed": removed, "finished": finished}
