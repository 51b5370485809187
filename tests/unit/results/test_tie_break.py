"""One rule for "best" on a tie: live progress, the launch summary, ``best``, ``status``, ``export``
and the report all name the same trial when three trials share the best figure."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from pldistill.config import TrialConfig
from pldistill.results import ResultsStore, best_trials, build_report, sweep_status
from pldistill.results.query import rank_key

SWEEP = "tie"
#: Three trials tie at 0.5; the pruned one reached more before ASHA stopped it; one scored less.
TIED = ("b7", "a2", "c0")
OTHERS = {"a1": ("completed", 0.4), "a0": ("pruned", 0.9)}


@pytest.fixture
def tied_root(tmp_path: Path, trial) -> Path:
    root = tmp_path / "results"
    store = ResultsStore(root, SWEEP)
    store.write_sweep_meta({"config": {}, "metric": "val_ua", "mode": "max"})
    rows = {t: ("completed", 0.5) for t in TIED} | OTHERS
    for trial_id, (status, val) in rows.items():
        store.write_trial(trial(trial_id, status=status, test_ua=val - 0.01, val_ua=val))
        best = store.sweep_dir / "runs" / trial_id / "seed_0" / "fold_1" / "best"  # what export looks for
        best.mkdir(parents=True)
        (best / "classifier.json").write_text("{}")
        (best / "pldistill_config.json").write_text(json.dumps({"config": TrialConfig().model_dump(mode="json"),
                                                                "epoch": 2}))
    return root


def _live_best() -> str:
    """The live progress fed the trials in the order Tune might end them: tied ones last-id first."""
    from pldistill.sweep.progress import SweepProgress

    progress = SweepProgress(5, "val_ua", "max", enabled=False)
    for trial_id, val, done in [("a0", 0.9, False), ("c0", 0.5, True), ("a1", 0.4, True), ("b7", 0.5, True),
                                ("a2", 0.5, True)]:
        trial = SimpleNamespace(trial_id=trial_id, status="TERMINATED")
        progress.on_trial_start(0, [], trial)
        result = {"val_ua": val, **({"trial_result": json.dumps({"metrics": {"val_ua": val}})} if done else {})}
        progress.on_trial_result(0, [], trial, result)
        progress.on_trial_complete(0, [], trial)
    assert progress.ended == {"completed": 4, "pruned": 1, "failed": 0, "running": 0}
    assert progress.best is not None
    return progress.best[1]


def test_every_reader_names_the_same_trial_on_a_three_way_tie(tied_root: Path, capsys) -> None:
    from pldistill.cli.results import print_best
    from pldistill.serve import find_trial

    expected = min(TIED)  # the rule: ties go to the lower trial id
    assert _live_best() == expected
    assert best_trials(tied_root, metric="val_ua", sweep=SWEEP).to_pylist()[0]["trial_id"] == expected
    assert sweep_status(tied_root).to_pylist()[0]["best_trial"] == expected
    assert find_trial(tied_root, SWEEP).trial_id == expected
    report = build_report(tied_root, SWEEP)
    assert report.best[0]["trial_id"] == expected
    assert {c.trial_id for cells in report.table1.rows.values() for c in cells.values()} == {expected}
    print_best(tied_root, sweep=SWEEP, metric="val_ua", mode="max", top=1)  # the launch summary's table
    out = capsys.readouterr().out
    assert expected in out and not any(t in out for t in TIED if t != expected)


def test_rank_key_orders_by_metric_then_sweep_then_trial() -> None:
    assert sorted([(0.5, "b"), (0.7, "z"), (0.5, "a")], key=lambda v: rank_key(*v, "max")) == [
        (0.7, "z"), (0.5, "a"), (0.5, "b")]
    assert rank_key(0.1, "z", "min") < rank_key(0.2, "a", "min")
    assert rank_key(0.5, "a", "max", sweep="s2") > rank_key(0.5, "b", "max", sweep="s1")
