"""Live trial metrics: each epoch's figures as ``ray.util.metrics`` series for Prometheus.

Rank 0 of every trial publishes, once per epoch, the epoch row the trial loop reports (see
:data:`pldistill.train.trial.Reporter`): the mean loss terms, the validation (and, when measured,
test) UA/WA/F1, samples per second and the learning rate. Every series carries the tags ``sweep``
and ``trial``; loss terms add ``term`` and evaluation figures ``split`` and ``metric``, so one
PromQL query covers all terms or metrics. Ray's per-node agent exports them in Prometheus format
(Ray prefixes application metrics with ``ray_``: ``ray_pldistill_val``); the dashboard's Metrics
view and a Prometheus/Grafana set up as Ray's docs describe show them while the sweep runs.

Publishing is best effort: a metrics failure is logged once and never fails a trial.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["METRIC_PREFIX", "TrialMetrics", "metric_points"]

METRIC_PREFIX = "pldistill_"

logger = logging.getLogger(__name__)

#: name -> (kind, description, extra tag keys beyond sweep and trial)
_SERIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "train_loss": ("gauge", "Mean training loss term of the last epoch", ("term",)),
    "eval": ("gauge", "Evaluation figure of the last epoch (split: val/test; metric: ua/wa/f1/loss)",
             ("split", "metric")),
    "samples_per_second": ("gauge", "Training samples per second of the last epoch (all workers)", ()),
    "learning_rate": ("gauge", "Learning rate at the end of the last epoch", ()),
    "epoch": ("gauge", "Last finished epoch (1-based) of the current fold", ()),
    "fold": ("gauge", "Fold being trained", ()),
    "seed": ("gauge", "Replicate seed being trained", ()),
    "epochs_total": ("counter", "Epochs finished, over all folds", ()),
}

# One metric object per name and process: Ray registers a metric by name when it is created.
_METRICS: dict[str, Any] = {}


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def metric_points(row: Mapping[str, Any]) -> list[tuple[str, float, dict[str, str]]]:
    """``(series, value, extra tags)`` for one epoch row; non-finite or missing values are left out.

    >>> metric_points({"train_loss_cka": 0.5, "val_ua": 0.75, "test_f1": float("nan")})
    [('train_loss', 0.5, {'term': 'cka'}), ('eval', 0.75, {'split': 'val', 'metric': 'ua'})]
    """
    renamed = {"seed": "seed", "fold": "fold", "epoch": "epoch", "samples_per_s": "samples_per_second", "lr": "learning_rate"}
    points: list[tuple[str, float, dict[str, str]]] = []
    for key, raw in row.items():
        value = _finite(raw)
        if value is None:
            continue
        if key.startswith("train_loss_"):
            points.append(("train_loss", value, {"term": key[len("train_loss_"):]}))
        elif key.startswith(("val_", "test_")):
            split, metric = key.split("_", 1)
            points.append(("eval", value, {"split": split, "metric": metric}))
        elif key in renamed:
            points.append((renamed[key], value, {}))
    return points


def _metric(name: str) -> Any:
    if name not in _METRICS:
        from ray.util.metrics import Counter, Gauge

        kind, description, extra = _SERIES[name]
        cls = Gauge if kind == "gauge" else Counter
        _METRICS[name] = cls(METRIC_PREFIX + name, description=description, tag_keys=("sweep", "trial", *extra))
    return _METRICS[name]


class TrialMetrics:
    """Publishes one trial's epoch rows; create it on the reporting rank, call :meth:`publish` per epoch."""

    def __init__(self, sweep: str, trial_id: str) -> None:
        self.tags = {"sweep": sweep, "trial": trial_id}
        self._failed = False

    def publish(self, row: Mapping[str, Any]) -> None:
        if self._failed:
            return
        try:
            for name, value, extra in metric_points(row):
                _metric(name).set(value, tags={**self.tags, **extra})
            _metric("epochs_total").inc(1.0, tags=self.tags)
        except Exception as exc:  # metrics are a view; the trial must go on without them
            self._failed = True
            logger.warning("pldistill: live metrics disabled for trial %s: %s", self.tags["trial"], exc)
