"""The trackers' Tune callbacks: Ray Tune's own MLflow and TensorBoard loggers, each doing what a pldistill
trial needs, behind a guard that keeps a failing tracker from taking the sweep down.

Imported only when a sweep asks for a tracker (:func:`pldistill.sweep.tracking.tracking_callbacks`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.tune import Callback
from ray.tune.logger import TBXLoggerCallback

__all__ = ["GuardedCallback", "MLflowTrialCallback", "TensorBoardTrialCallback"]


class GuardedCallback(Callback):
    """Runs one tracker's Tune hooks. Its first failure (server down, URI wrong, disk full) is said in
    one line and switches the tracker off for the rest of the sweep; a tracker never fails a sweep."""

    #: Tune then checks that every hook is forwarded (a hook left out would be silently dropped).
    IS_CALLBACK_CONTAINER = True

    def __init__(self, inner: Callback, name: str, say: Callable[[str], None] | None = None) -> None:
        self.inner = inner
        self.name = name
        self.off = False
        self._say = say

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state; the console's print holds locks.
        return {**self.__dict__, "_say": None}

    def _call(self, hook: str, info: dict[str, Any]) -> None:
        if self.off:
            return
        try:
            getattr(self.inner, hook)(**info)
        except Exception as exc:  # a tracker is a view of the sweep: the sweep goes on without it
            self.off = True
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            (self._say or print)(f"{self.name}: off for the rest of this sweep ({type(exc).__name__}: {reason})")

    def setup(self, **info: Any) -> None:
        self._call("setup", info)

    def on_step_begin(self, **info: Any) -> None:
        self._call("on_step_begin", info)

    def on_step_end(self, **info: Any) -> None:
        self._call("on_step_end", info)

    def on_trial_start(self, **info: Any) -> None:
        self._call("on_trial_start", info)

    def on_trial_restore(self, **info: Any) -> None:
        self._call("on_trial_restore", info)

    def on_trial_save(self, **info: Any) -> None:
        self._call("on_trial_save", info)

    def on_trial_result(self, **info: Any) -> None:
        self._call("on_trial_result", info)

    def on_trial_complete(self, **info: Any) -> None:
        self._call("on_trial_complete", info)

    def on_trial_recover(self, **info: Any) -> None:
        self._call("on_trial_recover", info)

    def on_trial_error(self, **info: Any) -> None:
        self._call("on_trial_error", info)

    def on_checkpoint(self, **info: Any) -> None:
        self._call("on_checkpoint", info)

    def on_experiment_end(self, **info: Any) -> None:
        self._call("on_experiment_end", info)


class MLflowTrialCallback(MLflowLoggerCallback):
    """Ray Tune's MLflow logger with a pldistill trial's identity and figures: the run is named by the
    trial id and tagged ``sweep`` and ``trial_id``; its params are the trial's resolved hyperparameters
    (fixed ones too, not only those Tune sampled); each report (every epoch, with its loss terms as
    ``epoch_train_loss_<term>``) is a step, as Ray logs it; at the end come the final figures with their
    intervals: ``final_<metric>``, ``final_<metric>_ci_low`` and ``_ci_high``."""

    def __init__(self, sweep: Any, tracking_uri: str | None, experiment: str) -> None:
        super().__init__(tracking_uri=tracking_uri, experiment_name=experiment, tags={"sweep": sweep.name})
        self.sweep = sweep

    def log_trial_start(self, trial: Any) -> None:
        from pldistill.sweep.space import hparams_of, resolve_trial_config

        if trial in self._trial_runs:  # restarted after a failure: the same run goes on
            return
        run_id = self._earlier_run(trial.trial_id)  # a resumed sweep's trial: its run goes on too
        if run_id is None:
            run_id = self.mlflow_util.start_run(
                run_name=trial.trial_id, tags={**self.tags, "trial_id": trial.trial_id, "trial_name": str(trial)},
            ).info.run_id
        self._trial_runs[trial] = run_id
        cfg = resolve_trial_config(self.sweep, trial.config, trial_id=trial.trial_id)
        self.mlflow_util.log_params(run_id=run_id, params_to_log=hparams_of(cfg))

    def _earlier_run(self, trial_id: str) -> str | None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient()  # the tracking URI setup() set
        runs = client.search_runs([self.mlflow_util.experiment_id], max_results=1,
                                  filter_string=f"tags.sweep = '{self.sweep.name}' and tags.trial_id = '{trial_id}'")
        if not runs:
            return None
        client.update_run(runs[0].info.run_id, status="RUNNING")
        return runs[0].info.run_id

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        from pldistill.sweep.tracking import trial_estimates

        payload = (trial.last_result or {}).get("trial_result")
        if payload and trial in self._trial_runs:
            _, estimates = trial_estimates(json.loads(payload))
            final: dict[str, float] = {}
            for name, est in estimates.items():
                final[f"final_{name}"] = est.mean
                if est.has_interval:  # one run has none; NaN would read as a figure
                    final[f"final_{name}_ci_low"], final[f"final_{name}_ci_high"] = est.low, est.high
            step = int(trial.last_result.get("training_iteration") or 0)
            self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=final, step=step)
        super().log_trial_end(trial, failed)


class TensorBoardTrialCallback(TBXLoggerCallback):
    """Ray Tune's TensorBoard logger, writing each trial's events to ``<root>/<trial id>`` (one stream per
    trial, beside the sweep's results) instead of Tune's trial folder; the scalars are Ray's
    (``ray/tune/<result key>`` at each ``training_iteration``)."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = Path(root)

    def log_trial_start(self, trial: Any) -> None:
        if trial in self._trial_writer:
            self._trial_writer[trial].close()
        self._trial_writer[trial] = self._summary_writer_cls(str(self.root / trial.trial_id), flush_secs=30)
        self._trial_result[trial] = {}
