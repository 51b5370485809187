"""Where researchers already look: the sweep file's ``tracking`` section, checked and turned into Tune callbacks.

* MLflow (``tracking.mlflow``): one run per trial, through Ray Tune's ``MLflowLoggerCallback``;
* TensorBoard (``tracking.tensorboard``): one event stream per trial, through Ray Tune's ``TBXLoggerCallback``;
* the Optuna study's storage (``tracking.optuna_storage``): :mod:`pldistill.sweep.study`.

Both trackers are opt-in and need the ``tracking`` extra (``pip install -e ".[tracking]"``); without it,
asking for one is a validate error naming the extra. A tracker that fails (server down, URI wrong)
says so in one line and is switched off; the sweep goes on (:class:`~pldistill.sweep._trackers.GuardedCallback`).
The callbacks live in :mod:`._trackers`, imported only when a sweep asks for them: this module stays
cheap to import (``validate`` uses it).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from typing import Any

from pldistill.sweep._problems import Problem

__all__ = ["EXTRA_HINT", "TENSORBOARD_DIR", "tracking_callbacks", "tracking_problems", "trial_estimates"]

#: How to get what the trackers need; named in the validate error when it is missing.
EXTRA_HINT = "pip install -e \".[tracking]\""
#: Under ``<results>/<name>/``: one folder of TensorBoard events per trial, named by its trial id.
TENSORBOARD_DIR = "tensorboard"
#: A down tracking server must not hold the sweep for MLflow's default retries (7, with backoff:
#: minutes); set only where the user has not set them.
_MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def tracking_problems(tracking: Any, algorithm: str | None) -> list[Problem]:
    """Problems of a ``TrackingConfig``: a tracker asked for without its package, a study storage
    for a sweep that has no study, an RDB URL SQLAlchemy cannot parse."""
    problems: list[Problem] = []
    for key, module, asked in (("mlflow", "mlflow", tracking.mlflow is not None),
                               ("tensorboard", "tensorboard", tracking.tensorboard)):
        if asked and not _installed(module):
            problems.append((("tracking", key), f"needs the tracking extra ({module} is not installed): {EXTRA_HINT}"))
    url = tracking.optuna_storage
    if url is not None:
        if algorithm not in (None, "optuna"):
            problems.append((("tracking", "optuna_storage"), f"only for algorithm optuna (algorithm {algorithm} keeps "
                                                             "no Optuna study)"))
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(url)
        except ArgumentError:
            problems.append((("tracking", "optuna_storage"), "expected an RDB URL such as sqlite:///optuna.db or "
                                                             "postgresql://user@host/db"))
    return problems


def tracking_callbacks(sweep: Any, say: Callable[[str], None] | None = None) -> list[Any]:
    """The Tune callbacks of the trackers ``sweep.tracking`` asks for, each guarded (see the module docstring)."""
    cfg = sweep.tracking
    callbacks: list[Any] = []
    if cfg.mlflow is not None:
        from pldistill.sweep._trackers import GuardedCallback, MLflowTrialCallback

        for var, value in _MLFLOW_HTTP_DEFAULTS.items():
            os.environ.setdefault(var, value)
        uri = cfg.mlflow.tracking_uri
        callbacks.append(GuardedCallback(MLflowTrialCallback(sweep, uri, cfg.mlflow.experiment or sweep.name),
                                         f"MLflow ({uri or 'its default tracking URI'})", say))
    if cfg.tensorboard:
        from pldistill.sweep._trackers import GuardedCallback, TensorBoardTrialCallback

        callbacks.append(GuardedCallback(TensorBoardTrialCallback(sweep.results_dir / TENSORBOARD_DIR),
                                         "TensorBoard", say))
    return callbacks


def trial_estimates(payload: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A finished trial's record and, for each figure it has, the mean over its (seed, fold) runs with
    the interval the reports give it (:func:`~pldistill.results.stats.runs_estimate`).

    ``payload``: the trial's whole result (``asdict(TrialResult)``, the last report's ``trial_result``)."""
    from pldistill.config import METRIC_NAMES
    from pldistill.results import TrialRecord
    from pldistill.results.stats import runs_estimate

    record = TrialRecord.from_result(payload, trial_id="-", status="completed")
    runs = [vars(f) for f in record.fold_metrics]
    return record, {m: runs_estimate(runs, m) for m in METRIC_NAMES if getattr(record, m, None) is not None}
