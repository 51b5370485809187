"""Which student to export: a sweep's trial and fold, found in the results folder.

A trial writes its best student per fold to ``<results>/<sweep>/runs/<trial>/fold_<k>/best/``
(the LoRA adapter, the projector and ``pldistill_config.json``, see ``train/trial.py``) and its
figures to ``<results>/<sweep>/trials/<trial>.parquet``. :func:`find_trial` reads both and returns
one :class:`TrialStudent`: everything export and the model card need, no weights loaded.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pldistill.config import TrialConfig
from pldistill.errors import InputError

__all__ = ["TrialStudent", "find_trial", "seed_intervals"]

#: The figures the card reports (means over the trial's folds in the trials row).
FIGURES = ("val_ua", "val_wa", "val_f1", "test_ua", "test_wa", "test_f1")


@dataclass(frozen=True)
class TrialStudent:
    """One fold's saved best student of one trial, with the trial's row and the sweep's metadata."""

    sweep: str
    trial_id: str
    fold: int
    epoch: int  # the best epoch, whose student was saved
    best_dir: Path
    config: TrialConfig
    row: dict[str, Any]  # the trial's row of the results table
    sweep_meta: dict[str, Any] = field(default_factory=dict)
    #: metric -> (mean, low, high, n) over the sweep's trials that differ from this one only in their
    #: seed (95% t interval); empty when the sweep ran this configuration once.
    intervals: dict[str, tuple[float, float, float, int]] = field(default_factory=dict)

    @property
    def fold_figures(self) -> dict[str, Any]:
        """This fold's best-epoch figures (``fold_metrics`` of the row), or {} when absent."""
        return next((dict(f) for f in self.row.get("fold_metrics") or [] if f.get("fold") == self.fold), {})


def find_trial(results: Path, sweep: str, *, trial: str | None = None, fold: int | None = None) -> TrialStudent:
    """The student of ``trial`` (None: the sweep's best completed trial by the sweep's metric) and
    ``fold`` (None: the trial's fold whose best epoch scored highest on that metric, or its only one)."""
    from pldistill.results import best_trials, list_sweeps, read_trials
    from pldistill.results.store import ResultsStore

    results = Path(results)
    known = list_sweeps(results)
    if sweep not in known:
        raise InputError(results, "sweep", f"unknown sweep {sweep!r}; known: {', '.join(known) or 'none'}")
    meta = ResultsStore(results, sweep).read_sweep_meta() or {}
    metric = str(meta.get("metric") or "val_ua")
    rows = {r["trial_id"]: r for r in read_trials(results, sweep).to_pylist()}
    if trial is None:
        ranked = best_trials(results, metric=metric, mode=meta.get("mode") or None, sweep=sweep).to_pylist()
        if not ranked:
            raise InputError(results / sweep, "trials", f"no completed trial with a {metric} to export")
        trial = str(ranked[0]["trial_id"])
    if trial not in rows:
        raise InputError(results / sweep, "trial", f"unknown trial {trial!r}; the sweep has: "
                                                   f"{', '.join(sorted(rows)[:20]) or 'none'}")
    row = rows[trial]
    fold = _pick_fold(row, fold, metric, results / sweep)
    best_dir = _best_dir(results, sweep, trial, fold, row)
    saved = _read_json(best_dir / "pldistill_config.json")
    config = TrialConfig.model_validate(saved["config"])
    return TrialStudent(sweep=sweep, trial_id=trial, fold=fold, epoch=int(saved.get("epoch", -1)),
                        best_dir=best_dir, config=config, row=row, sweep_meta=meta,
                        intervals=seed_intervals(list(rows.values()), row))


def _pick_fold(row: dict[str, Any], fold: int | None, metric: str, where: Path) -> int:
    folds = [int(f) for f in row.get("folds") or []]
    if fold is not None:
        if folds and fold not in folds:
            raise InputError(where, "fold", f"trial {row['trial_id']} ran folds {folds}, not {fold}")
        return fold
    if not folds:
        raise InputError(where, "fold", f"trial {row['trial_id']} records no folds; pass --fold")
    figures = {int(f["fold"]): f.get(metric) for f in row.get("fold_metrics") or []}
    scored = [f for f in folds if isinstance(figures.get(f), float) and math.isfinite(figures[f])]
    if not scored:
        return folds[0]
    lower_is_better = "loss" in metric
    return min(scored, key=lambda f: figures[f]) if lower_is_better else max(scored, key=lambda f: figures[f])


def _best_dir(results: Path, sweep: str, trial: str, fold: int, row: dict[str, Any]) -> Path:
    """The saved student: under the results folder (where the sweep put it, and where it still is
    when the results folder was moved), else where the trial's config says it wrote it."""
    candidates = [results / sweep / "runs" / trial / f"fold_{fold}" / "best"]
    if row.get("config_json"):
        out = TrialConfig.model_validate_json(row["config_json"]).output_dir
        candidates.append(Path(out) / f"fold_{fold}" / "best")
    for path in candidates:
        if (path / "adapter_model.safetensors").is_file() and (path / "pldistill_config.json").is_file():
            return path
    raise InputError(candidates[0], None, f"no saved student of trial {trial} fold {fold} (expected "
                                          "adapter_model.safetensors and pldistill_config.json)")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, None, f"cannot read ({exc})") from exc
    if not isinstance(data, dict) or "config" not in data:
        raise InputError(path, "config", "missing: not a trial's saved student")
    return data


def _without_seed(config_json: str | None) -> str | None:
    """A trial's resolved config minus what differs between repeats of one configuration."""
    if not config_json:
        return None
    cfg = json.loads(config_json)
    for key in ("name", "output_dir"):
        cfg.pop(key, None)
    cfg.get("train", {}).pop("seed", None)
    return json.dumps(cfg, sort_keys=True)


def seed_intervals(rows: list[dict[str, Any]], row: dict[str, Any],
                   confidence: float = 0.95) -> dict[str, tuple[float, float, float, int]]:
    """Mean and ``confidence`` t interval of each figure over the completed trials whose resolved
    config equals ``row``'s but for ``train.seed`` (a sweep that repeats a configuration over
    seeds); {} when there are fewer than two such trials."""
    import numpy as np
    from scipy import stats

    key = _without_seed(row.get("config_json"))
    if key is None:
        return {}
    same = [r for r in rows if r.get("status") == "completed" and _without_seed(r.get("config_json")) == key]
    if len(same) < 2:
        return {}
    out: dict[str, tuple[float, float, float, int]] = {}
    for name in FIGURES:
        values = np.array([r[name] for r in same if isinstance(r.get(name), float) and math.isfinite(r[name])])
        if len(values) < 2:
            continue
        mean = float(values.mean())
        low, high = stats.t.interval(confidence, len(values) - 1, loc=mean, scale=stats.sem(values))
        low, high = (mean, mean) if not math.isfinite(low) else (float(low), float(high))  # all equal: sem 0
        out[name] = (mean, low, high, len(values))
    return out
