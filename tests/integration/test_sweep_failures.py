"""A failing trial never takes the sweep down: it is recorded with its reason, the others finish.

A grid of two variants, one of which diverges (lr 1e30: the loss turns non-finite in its first
epoch). The sweep must end with one completed and one failed row, the failure's reason first in
its error text, and Optuna-free grid bookkeeping intact.
"""

from __future__ import annotations

import pytest
from _procs import launch_locally, tiny_sweep

from pldistill.results import read_trials

pytestmark = pytest.mark.slow


def test_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, tiny_cache, monkeypatch):
    path = tiny_sweep("failures", tmp_path, tiny_cache, search={
        "algorithm": "grid", "max_concurrent_trials": 1,
        "variants": [{"name": "ok", "objective": "sft", "lr": 1e-3}, {"name": "diverges", "objective": "sft", "lr": 1e30}]})
    summary = launch_locally(path, monkeypatch)
    assert summary.counts == {"completed": 1, "pruned": 0, "failed": 1, "running": 0, "total": 2}
    rows = {r["hp_lr"]: r for r in read_trials(tmp_path / "results").to_pylist()}
    assert rows[1e-3]["status"] == "completed" and rows[1e-3]["error"] is None
    failed = rows[1e30]
    assert failed["status"] == "failed"
    assert failed["error"].splitlines()[0].startswith("TrialDivergedError: non-finite loss")
    assert failed["ended_at"] is not None


def test_diverged_trials_reach_optuna_as_failures_not_values(tmp_path, tiny_cache, monkeypatch):
    """Every trial of this Optuna sweep diverges: each is recorded failed with its reason, never
    retried (it would diverge again), and Optuna's study holds them as FAIL with no value."""
    import glob
    import pickle

    path = tiny_sweep("diverging", tmp_path, tiny_cache, epochs=2, fixed={"objective": "sft"},
                      search={"algorithm": "optuna", "metric": "val_ua", "mode": "max", "num_samples": 2,
                              "max_concurrent_trials": 2,
                              "space": {"lr": {"type": "loguniform", "low": 1e29, "high": 1e30}}},
                      failures={"worker_restarts": 2, "trial_retries": 1})
    summary = launch_locally(path, monkeypatch)
    assert summary.counts == {"completed": 0, "pruned": 0, "failed": 2, "running": 0, "total": 2}
    rows = read_trials(tmp_path / "results").to_pylist()
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all(r["error"].startswith("TrialDivergedError: non-finite loss in seed 0 fold 1 epoch 1") for r in rows)
    exp = tmp_path / "results" / "diverging" / "ray-tune" / "diverging"
    with open(max(glob.glob(str(exp / "searcher-state-*.pkl"))), "rb") as fh:
        study = pickle.load(fh)["_ot_study"]  # this test's own Tune state: trusted
    assert [(t.state.name, t.value) for t in study.trials] == [("FAIL", None), ("FAIL", None)]

