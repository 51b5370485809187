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

Tune's snapshot can also name a trial checkpoint that is gone (:func:`repair_lost_checkpoints`
puts the trial's next one in its place before Tune restores it).

Rows are one file per trial id, so nothing is ever written twice. A lock file held by the launching
process keeps a second launcher off a sweep that is running; the OS drops it when that process dies,
however it dies.
"""

from __future__ import annotations

import os
import re
import shutil
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pldistill.errors import PldistillError

__all__ = ["SweepLock", "experiment_dir", "can_resume", "reconcile", "SweepBusyError", "CheckpointRepair",
           "repair_lost_checkpoints", "set_aside_unreadable", "remove_stale_sweep_temps"]

_LOCK_FILE = ".launch.lock"
_CHECKPOINT_DIR = re.compile(r"checkpoint_(\d+)")  # Tune's f"checkpoint_{index:06d}"


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


def remove_stale_sweep_temps(sweep_dir: Path) -> int:
    """Remove what writers killed mid-write left anywhere in the sweep's folder (results files,
    ``sweep.json``, trial checkpoints). Only under :class:`SweepLock`: no other launcher, and so none
    of its trials, writes there meanwhile. Returns how many were removed."""
    from pldistill._fs import remove_stale_temps

    folders = {p.parent for p in Path(sweep_dir).rglob(".*") if ".tmp-" in p.name or ".old-" in p.name}
    return sum(remove_stale_temps(f) for f in folders)


def tune_trials(results: Path, name: str) -> list[Any]:
    """Tune's trials as of its latest experiment snapshot (``ray.tune.ExperimentAnalysis``)."""
    from ray.tune import ExperimentAnalysis

    return list(ExperimentAnalysis(str(experiment_dir(results, name))).trials)


def reconcile(store: Any, recorder: Any, trials: list[Any]) -> dict[str, Any]:
    """Make the results table agree with Tune's ``trials``; returns what was removed and completed,
    and the unreadable results files set aside (``set_aside``: (file, where it went, why))."""
    from pldistill.results import read_trials
    from pldistill.results.status import COMPLETED, FAILED, PRUNED

    known = {t.trial_id: t for t in trials}
    removed = finished = 0
    set_aside = set_aside_unreadable(store)
    for path, _, _ in set_aside:  # a trial's epochs: from its checkpoint (a finished trial's last)
        if path.parent.name == "epochs" and path.stem in known:
            _rewrite_epochs(store, known[path.stem])
    table = read_trials(store.root, sweep=store.sweep) if store.sweep_dir.joinpath("trials").is_dir() else None
    rows = {r["trial_id"]: r for r in table.to_pylist()} if table is not None else {}
    for trial_id in set(rows) - set(known):
        for path in (store.trial_path(trial_id), store.epochs_path(trial_id)):
            path.unlink(missing_ok=True)
        removed += 1
    for trial_id, trial in known.items():
        status = rows.get(trial_id, {}).get("status")
        if trial.status in ("TERMINATED", "ERROR") and status not in (COMPLETED, PRUNED, FAILED):
            recorder.record_final(trial)
            finished += 1
    return {"removed": removed, "finished": finished, "set_aside": set_aside}


def set_aside_unreadable(store: Any) -> list[tuple[Path, Path, str]]:
    """Move the sweep's unreadable results files (truncated, empty, another schema) into
    ``<sweep>/unreadable/<kind>/``, never deleting one (someone may want to look at it); returns
    (file, where it went, why) for each. Their trials are then recorded again (:func:`reconcile`)."""
    from datetime import datetime, timezone

    from pldistill._fs import private_dirs
    from pldistill.results import unreadable_files

    moved = []
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    for path, why in unreadable_files(store.root, store.sweep):
        dest = store.sweep_dir / "unreadable" / path.parent.name / f"{path.name}.{stamp}"
        private_dirs(dest.parent)
        os.replace(path, dest)  # same filesystem: a rename
        moved.append((path, dest, why))
    return moved


def _rewrite_epochs(store: Any, trial: Any) -> None:
    """A trial's epoch rows again from the trainer state in Tune's latest checkpoint of it (every
    row reported up to it); a trial Tune still runs writes them again itself at its next epoch."""
    from pldistill.results import EpochRecord
    from pldistill.train.checkpoint import load_state

    ckpt = getattr(trial, "checkpoint", None)
    state = load_state(Path(ckpt.path)) if ckpt is not None and Path(ckpt.path).is_dir() else None
    if state is not None and state.epoch_rows():
        store.write_epochs(trial.trial_id, [EpochRecord.from_metrics(store.sweep, trial.trial_id, r)
                                            for r in state.epoch_rows()])


@dataclass(frozen=True)
class CheckpointRepair:
    """A trial whose snapshot-named checkpoint ``path`` was missing, and the folder moved there
    (``source``), or None when the trial had none left (``path`` is then an empty folder)."""

    trial_id: str
    path: Path
    source: Path | None
    #: the checkpoint was there but partly deleted (Tune's deletion of it killed midway), not gone
    partial: bool = False

    def describe(self) -> str:
        got = f"moved {self.source.name} there" if self.source else "none left: the trial starts again"
        was = "half-deleted" if self.partial else "gone"
        return f"trial {self.trial_id}: its snapshot's checkpoint {self.path.name} was {was}; {got}"


def repair_lost_checkpoints(trials: list[Any]) -> list[CheckpointRepair]:
    """Give every unfinished trial of Tune's snapshot (:func:`tune_trials`) the checkpoint the
    snapshot names, so that ``Tuner.restore`` can restore it; returns what was repaired.

    Why one can be missing: with ``CheckpointConfig(num_to_keep=1)`` Tune deletes a trial's old
    checkpoint as soon as it registers the next one, but writes the experiment snapshot only later
    (its next controller step, then an asynchronous copy to storage). A launcher killed in between
    leaves a snapshot naming ``checkpoint_k``, which is gone, beside ``checkpoint_k+1``; Tune's
    restore then fails ("Could not recover from checkpoint as it does not exist on storage
    anymore") on every retry. The repair renames (atomically, same folder) the first checkpoint
    after ``k`` into ``checkpoint_k``: Tune registered it, so it had been copied in full, whereas a
    later one may be half-copied (a trial process can outlive its launcher for a moment). Other
    folders after ``k`` are removed: unknown to Tune, they are where it writes the trial's next
    checkpoints. The loop reads its epoch from the moved state, so the trial carries on after it.
    Tune's own ``training_iteration`` for the trial then lags by one (the snapshot's metrics come
    with ``checkpoint_k``): ASHA judges that one trial's rungs one epoch late, a slight leniency
    in a rare event, and the trial still ends at its last epoch by itself; results and Optuna read
    pldistill's epochs and metrics, not Tune's count.

    A kill during Tune's own deletion of ``checkpoint_k`` leaves it half-deleted: a folder whose
    state or a file the state names is gone (:func:`~pldistill.train.checkpoint.checkpoint_complete`);
    it is removed (Tune was deleting it) and repaired like a missing one.

    With no checkpoint left at all (only by hand), an empty ``checkpoint_k`` makes the trial start
    again from scratch (no trainer state in it, :func:`pldistill.train.checkpoint.load_state`);
    left missing, each retry would fail and the trial would end failed."""
    from pldistill.train.checkpoint import checkpoint_complete

    repairs = []
    for trial in trials:
        ckpt = getattr(trial, "checkpoint", None)
        if ckpt is None or trial.status in ("TERMINATED", "ERROR"):  # finished: never restored
            continue
        named = Path(ckpt.path)
        index = _checkpoint_index(named)
        if index is None:  # not a folder Tune named: leave it to Tune
            continue
        partial = named.exists() and not checkpoint_complete(named)
        if named.exists() and not partial:
            continue
        if partial:  # what Tune's deletion of it left: repaired like a missing one
            shutil.rmtree(named, ignore_errors=True)
        found = sorted((i, p) for p in named.parent.glob("checkpoint_*")
                       if p.is_dir() and (i := _checkpoint_index(p)) is not None)
        after = [p for i, p in found if i > index]
        # none after k (only by hand): the newest before it is still the newest state there is
        source = after[0] if after else (found[-1][1] if found else None)
        if source is None:
            named.mkdir(parents=True)
        else:
            source.rename(named)
            for stale in after[1:]:
                shutil.rmtree(stale, ignore_errors=True)
        repairs.append(CheckpointRepair(trial.trial_id, named, source, partial))
    return repairs


def _checkpoint_index(path: Path) -> int | None:
    match = _CHECKPOINT_DIR.fullmatch(path.name)
    return int(match.group(1)) if match else None
