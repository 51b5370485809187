"""The report's figures as a reader sees them: pruned trials shown and marked, whole-number trial
ticks, readable log axes."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pldistill.results import ResultsStore
from pldistill.results import report as rep
from pldistill.results._plots import FIGURES
from pldistill.results.space import ParamSpec

T0 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
SPACE = [ParamSpec("lora_rank", "int", 2, 16, log=True), ParamSpec("temperature", "float", 0.5, 8.0, log=True),
         ParamSpec("alpha", "float", 0.0, 2.0)]
#: (status, val_ua, lora_rank, temperature, alpha): an ASHA sweep where 4 of 6 trials were pruned.
TRIALS = [("pruned", 0.31, 2, 0.6, 0.1), ("completed", 0.55, 4, 1.3, 0.7), ("pruned", 0.28, 7, 2.2, 1.1),
          ("pruned", 0.40, 11, 4.0, 1.5), ("completed", 0.47, 16, 7.5, 1.9), ("pruned", 0.35, 3, 0.9, 0.4)]


@pytest.fixture
def asha(tmp_path: Path, trial: Callable[..., Any]) -> rep.SweepReport:
    root = tmp_path / "results"
    store = ResultsStore(root, "asha")
    store.write_sweep_meta({"metric": "val_ua", "mode": "max", "space": [p.to_json() for p in SPACE],
                            "config": {"search": {"algorithm": "optuna"}}})
    for i, (status, val, rank, temp, alpha) in enumerate(TRIALS):
        store.write_trial(trial(f"t{i}", status=status, val_ua=val, ended_at=T0 + dt.timedelta(minutes=i),
                                hparams={"lora_rank": rank, "temperature": temp, "alpha": alpha}))
    return rep.build_report(root, "asha")


def _points(ax: Any) -> dict[str, list[tuple[float, float]]]:
    """Scatter label -> its (x, y) points."""
    return {c.get_label(): [tuple(p) for p in c.get_offsets()] for c in ax.collections if len(c.get_offsets())}


def test_history_shows_pruned_trials_marked(asha: rep.SweepReport) -> None:
    assert [(h.value, h.pruned) for h in asha.history] == [(v, s == "pruned") for s, v, *_ in TRIALS]
    # the best so far counts completed trials only (the tables choose among them)
    assert [h.best for h in asha.history][1:] == [0.55] * 5
    assert "Hollow points in both plots are pruned trials" in rep.render_markdown(asha, {})
    fig = FIGURES["history"](asha)
    ax = fig.axes[0]
    pts = _points(ax)
    pruned = [p for label, ps in pts.items() if label.startswith("pruned") for p in ps]
    done = [p for label, ps in pts.items() if not label.startswith("pruned") for p in ps]
    assert sorted(pruned) == [(i + 1.0, v) for i, (s, v, *_) in enumerate(TRIALS) if s == "pruned"]
    assert sorted(done) == [(i + 1.0, v) for i, (s, v, *_) in enumerate(TRIALS) if s == "completed"]
    for n in (2, 3, 6):  # matplotlib puts 1.2, 1.4, ... under a short history unless told otherwise
        ax = FIGURES["history"](dataclasses.replace(asha, history=asha.history[:n])).axes[0]
        ax.figure.canvas.draw()
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks)  # trial numbers, never 2.5


def test_params_figure_shows_every_trial_on_readable_axes(asha: rep.SweepReport) -> None:
    fig = FIGURES["metric_vs_params"](asha)
    fig.canvas.draw()
    by_name = {ax.get_xlabel(): ax for ax in fig.axes if ax.get_visible()}
    assert set(by_name) == {"lora_rank", "temperature", "alpha"}
    for name, ax in by_name.items():
        pts = _points(ax)
        col = {"lora_rank": 2, "temperature": 3, "alpha": 4}[name]
        shown = sorted(p for ps in pts.values() for p in ps)
        assert shown == sorted((float(t[col]), t[1]) for t in TRIALS)
        assert len([p for label, ps in pts.items() if label.startswith("pruned") for p in ps]) == 4
    for name in ("lora_rank", "temperature"):
        ax = by_name[name]
        assert ax.get_xscale() == "log"
        assert all(t.get_text() == "" for t in ax.get_xticklabels(minor=True))  # no overlapping minor labels
        lo, hi = ax.get_xlim()
        labels = [t.get_text() for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi]
        assert len(labels) >= 3 and all(labels)
    lo, hi = by_name["lora_rank"].get_xlim()
    assert [t for t in by_name["lora_rank"].get_xticks() if lo <= t <= hi] == [2, 4, 8, 16]


def test_tied_grid_points_stand_side_by_side() -> None:
    """A grid's trials that ignore a hyperparameter tie on it: each keeps a dot of its own, inside its
    category's slot."""
    from pldistill.results._plots import _spread

    xs = _spread([0, 1, 0, 0, 2])
    assert xs[1] == 1.0 and xs[4] == 2.0  # alone in its category: on the tick
    ties = [xs[0], xs[2], xs[3]]
    assert len(set(ties)) == 3 and all(abs(x) <= 0.125 for x in ties)
