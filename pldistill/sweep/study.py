"""An optuna sweep's study, kept in an Optuna storage where ``optuna-dashboard`` and ``optuna.load_study`` find it.

Ray Tune's ``OptunaSearch`` takes the storage and the study's name (the sweep's) itself; by default
the storage is a journal file under the sweep's results folder (:data:`JOURNAL_FILE`: journal files
work on shared filesystems), or the RDB URL of ``tracking.optuna_storage``. The study holds every
trial's parameters, its intermediate values (the selection metric Tune and ASHA see at each report)
and its final value (the mean over its runs); :class:`StudySearch` adds each trial's seeds, folds and
intervals as user attributes.

A resumed sweep continues the same study, and no trial appears in it twice. The storage is always
ahead of Tune's snapshot of the searcher, which a resume restores: a trial Optuna was asked for after
the snapshot is handed to the next trial Tune starts rather than left running beside a new one, and a
trial already told after the snapshot is not told (or reported) again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from pldistill.errors import InputError

__all__ = ["JOURNAL_FILE", "StudySearch", "open_storage", "prepare_study", "storage_label"]

#: The default storage, under ``<results>/<name>/``.
JOURNAL_FILE = "optuna-journal.log"


def _journal(sweep: Any) -> Path:
    return Path(sweep.results_dir) / JOURNAL_FILE


def storage_label(sweep: Any) -> str:
    """The storage as ``optuna-dashboard`` and ``optuna.load_study`` take it (an RDB URL's password hidden)."""
    url = sweep.tracking.optuna_storage
    if url is None:
        return str(_journal(sweep))
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def open_storage(sweep: Any) -> optuna.storages.BaseStorage:
    """The sweep's storage; an RDB that cannot be opened is an InputError naming the file and key."""
    url = sweep.tracking.optuna_storage
    if url is None:
        from optuna.storages.journal import JournalFileBackend

        _journal(sweep).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(_journal(sweep))))
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # SQLAlchemy's and the driver's errors: one line, naming the storage
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise InputError(sweep.source or "sweep", "tracking.optuna_storage",
                         f"cannot open {storage_label(sweep)}: {reason}") from None


def prepare_study(sweep: Any, resuming: bool) -> optuna.storages.BaseStorage | None:
    """The storage of an optuna sweep's study (None for other algorithms), ready for the sweep to start
    or resume. Before a fresh start (not a resume), the default journal an earlier start left without
    any Tune state to resume is removed (nothing would ever continue it), and an RDB storage that
    already holds a study of the sweep's name is refused, as a finished sweep of that name is."""
    if sweep.search.algorithm != "optuna":
        return None
    if not resuming and sweep.tracking.optuna_storage is None:
        _journal(sweep).unlink(missing_ok=True)
    storage = open_storage(sweep)
    if not resuming and sweep.name in optuna.study.get_all_study_names(storage):
        raise InputError(sweep.source or "sweep", "tracking.optuna_storage",
                         f"{storage_label(sweep)} already holds a study named {sweep.name!r}; give the sweep a new "
                         f"name, or delete that study (optuna delete-study --study-name {sweep.name} --storage ...)")
    return storage


class StudySearch(OptunaSearch):
    """Ray Tune's ``OptunaSearch`` on a persistent storage, made safe to resume (see the module
    docstring), telling each trial's seeds, folds and intervals to its study as user attributes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._adoptable: list[int] = []

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        # Trials the storage has as running that the snapshot never heard of: asked for after it.
        known = {t.number for t in self._ot_trials.values()}
        running = self._ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        self._adoptable = [t._trial_id for t in running if t.number not in known]
        if self._adoptable:
            # The seeded sampler came back with the snapshot's random state, from before it drew the
            # adopted trials: it would draw their parameters again for the trials after them.
            self._ot_study.sampler.reseed_rng()

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id not in self._ot_trials and self._adoptable and self._space and not callable(self._space):
            # OptunaSearch.suggest hands out the parameters this Optuna trial was sampled with
            self._ot_trials[trial_id] = optuna.Trial(self._ot_study, self._adoptable.pop(0))
        return super().suggest(trial_id)

    def _told(self, trial_id: str) -> bool:
        """Finished in the storage (told after the snapshot this run was restored from)."""
        ot = self._ot_trials.get(trial_id)
        if ot is None or trial_id in self._completed_trials:
            return False
        if ot.storage.get_trial(ot._trial_id).state.is_finished():
            self._completed_trials.add(trial_id)
            return True
        return False

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if not self._told(trial_id):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self._told(trial_id):
            return
        ot = self._ot_trials.get(trial_id)
        if ot is not None and trial_id not in self._completed_trials and result:
            for key, value in _user_attrs(result, error).items():
                ot.set_user_attr(key, value)
        super().on_trial_complete(trial_id, result, error)


def _user_attrs(result: dict, error: bool) -> dict[str, Any]:
    """A finished trial's seeds, folds and, per figure, its interval ``[low, high]`` (None without one)
    and the interval's method; a trial without its whole result (ASHA stopped it) says so instead."""
    import json

    from pldistill.sweep.tracking import trial_estimates

    payload = result.get("trial_result")
    if not payload:
        return {} if error else {"stopped_early": True}
    record, estimates = trial_estimates(json.loads(payload))
    attrs: dict[str, Any] = {"seeds": list(record.seeds), "folds": list(record.folds)}
    for name, est in estimates.items():
        attrs[f"ci_{name}"] = [est.low, est.high] if est.has_interval else None
        attrs[f"ci_{name}_method"] = est.method
    return attrs
