"""Which student to export: a sweep's trial and one of its (seed, fold) runs, found in the results folder.

A trial writes its best student per run to ``<results>/<sweep>/runs/<trial>/seed_<s>/fold_<k>/best/``
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

from pldistill.config import SCORE_NAMES, TrialConfig
from pldistill.errors import InputError

__all__ = ["TrialStudent", "find_trial", "run_intervals"]

#: The figures the card reports (means over the trial's folds in the trials row): the config's scores.
FIGURES = SCORE_NAMES


@dataclass(frozen=True)
class TrialStudent:
    """One run's (seed, fold) saved best student of one trial, with the trial's row and the sweep's metadata."""

    sweep: str
    trial_id: str
    seed: int
    fold: int
    epoch: int  # the best epoch, whose student was saved
    best_dir: Path
    config: TrialConfig
    row: dict[str, Any]  # the trial's row of the results table
    sweep_meta: dict[str, Any] = field(default_factory=dict)
    #: metric -> (mean, low, high, n) over the trial's (seed, fold) runs (95% t interval); empty when
    #: the trial ran once.
    intervals: dict[str, tuple[float, float, float, int]] = field(default_factory=dict)

    @property
    def fold_figures(self) -> dict[str, Any]:
        """This run's best-epoch figures (``fold_metrics`` of the row), or {} when absent."""
        return next((dict(f) for f in self.row.get("fold_metrics") or []
                     if f.get("fold") == self.fold and f.get("seed", 0) in (self.seed, None)), {})


def find_trial(results: Path, sweep: str, *, trial: str | None = None, fold: int | None = None,
               seed: int | None = None) -> TrialStudent:
    """The student of ``trial`` (None: the sweep's best completed trial by the sweep's metric) and of
    its run (``seed``, ``fold``); what is not given is the run whose best epoch scored highest on that
    metric among those that fit (the only one, for a trial of one run)."""
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
    seed, fold = _pick_run(row, seed, fold, metric, results / sweep)
    best_dir = _best_dir(results, sweep, trial, seed, fold, row)
    saved = _read_json(best_dir / "pldistill_config.json")
    config = TrialConfig.model_validate(saved["config"])
    return TrialStudent(sweep=sweep, trial_id=trial, seed=seed, fold=fold, epoch=int(saved.get("epoch", -1)),
                        best_dir=best_dir, config=config, row=row, sweep_meta=meta, intervals=run_intervals(row))


def _pick_run(row: dict[str, Any], seed: int | None, fold: int | None, metric: str, where: Path) -> tuple[int, int]:
    runs = [(int(f.get("seed") or 0), int(f["fold"])) for f in row.get("fold_metrics") or []]
    if not runs:
        runs = [(0, int(f)) for f in row.get("folds") or []]
    if not runs:
        raise InputError(where, "fold", f"trial {row['trial_id']} records no runs; pass --seed and --fold")
    fits = [r for r in runs if (seed is None or r[0] == seed) and (fold is None or r[1] == fold)]
    if not fits:
        asked = ", ".join(f"{k} {v}" for k, v in (("seed", seed), ("fold", fold)) if v is not None)
        ran = "; ".join(f"seed {s} fold {f}" for s, f in runs)
        raise InputError(where, "fold" if fold is not None else "seed",
                         f"trial {row['trial_id']} has no run with {asked}; it ran: {ran}")
    figures = {(int(f.get("seed") or 0), int(f["fold"])): f.get(metric) for f in row.get("fold_metrics") or []}
    scored = [r for r in fits if isinstance(figures.get(r), float) and math.isfinite(figures[r])]
    if not scored:
        return fits[0]
    lower_is_better = "loss" in metric
    return min(scored, key=lambda r: figures[r]) if lower_is_better else max(scored, key=lambda r: figures[r])


def _best_dir(results: Path, sweep: str, trial: str, seed: int, fold: int, row: dict[str, Any]) -> Path:
    """The saved student: under the results folder (where the sweep put it, and where it still is
    when the results folder was moved), else where the trial's config says it wrote it."""
    run = Path(f"seed_{seed}") / f"fold_{fold}" / "best"
    candidates = [results / sweep / "runs" / trial / run]
    if row.get("config_json"):
        out = TrialConfig.model_validate_json(row["config_json"]).output_dir
        candidates.append(Path(out) / run)
    for path in candidates:  # the audio-LLM student's adapter, or the classifier's standalone weights
        weights = (path / "adapter_model.safetensors").is_file() or (path / "classifier.json").is_file()
        if weights and (path / "pldistill_config.json").is_file():
            return path
    raise InputError(candidates[0], None, f"no saved student of trial {trial} seed {seed} fold {fold} (expected "
                                          "adapter_model.safetensors or classifier.json, and pldistill_config.json)")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, None, f"cannot read ({exc})") from exc
    if not isinstance(data, dict) or "config" not in data:
        raise InputError(path, "config", "missing: not a trial's saved student")
    return data


def run_intervals(row: dict[str, Any], confidence: float = 0.95) -> dict[str, tuple[float, float, float, int]]:
    """Mean and ``confidence`` t interval of each figure over the trial's (seed, fold) runs
    (``fold_metrics``); {} when the trial ran once."""
    from pldistill.results.stats import runs_estimate

    runs = row.get("fold_metrics") or []
    if len(runs) < 2:
        return {}
    out: dict[str, tuple[float, float, float, int]] = {}
    for name in FIGURES:
        est = runs_estimate(runs, name, confidence)
        if est.has_interval:  # not where a fold has no finite run (no estimate) or a single run
            out[name] = (est.mean, est.low, est.high, est.n)
    return out
