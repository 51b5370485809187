"""Where researchers already look: a small Optuna sweep's study, MLflow runs and TensorBoard events, read
back with each library's own reader, hold the figures of the sweep's Parquet results.

Two trials of two seeds (so each has an interval), one epoch each, tiny models, one in-process worker.
(A tracking server that is down costs a sweep one line, not its trials: tests/integration/test_sweep_resume.py,
whose three launches each meet one.)
"""

from __future__ import annotations

import pytest
import yaml
from _procs import launch_locally, tiny_sweep

from pldistill.results import read_epochs, read_trials
from pldistill.results.stats import runs_estimate

pytestmark = pytest.mark.slow
optuna = pytest.importorskip("optuna")
mlflow = pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")


def _sweep(tmp_path, cache, name, tracking):
    path = tiny_sweep(name, tmp_path, cache, max_steps_per_epoch=6, fixed={"objective": "pl_distill"},
                      search={"algorithm": "optuna", "num_samples": 2, "max_concurrent_trials": 2, "seed": 5,
                              "seeds": [0, 1], "space": {"alpha": {"type": "uniform", "low": 0.0, "high": 2.0}}})
    doc = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**doc, "tracking": tracking}))
    return path


def test_study_mlflow_and_tensorboard_hold_the_parquet_figures(tmp_path, tiny_cache, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = _sweep(tmp_path, tiny_cache, "tracked", {"mlflow": {"tracking_uri": uri, "experiment": "pldistill-test"},
                                                    "tensorboard": True})
    summary = launch_locally(path, monkeypatch)
    assert summary.counts == {"completed": 2, "pruned": 0, "failed": 0, "running": 0, "total": 2}
    results = tmp_path / "results"
    trials = {r["trial_id"]: r for r in read_trials(results).to_pylist()}
    epochs = sorted(read_epochs(results).to_pylist(), key=lambda e: (e["trial_id"], e["seed"], e["epoch"]))
    per_trial = {t: [e for e in epochs if e["trial_id"] == t] for t in trials}
    assert all(len(rows) == 2 for rows in per_trial.values())  # 2 seeds x 1 epoch
    ci = {t: runs_estimate(r["fold_metrics"], "val_ua") for t, r in trials.items()}
    assert all(est.has_interval for est in ci.values())

    # Optuna: the study the dashboard opens, named after the sweep
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(results / "tracked" / "optuna-journal.log")))
    study = optuna.load_study(study_name="tracked", storage=storage)
    by_alpha = {round(r["hp_alpha"], 12): t for t, r in trials.items()}
    assert len(study.trials) == 2 and {round(t.params["alpha"], 12) for t in study.trials} == set(by_alpha)
    for ot in study.trials:
        row = trials[by_alpha[round(ot.params["alpha"], 12)]]
        assert ot.state.name == "COMPLETE" and ot.value == pytest.approx(row["val_ua"])
        assert sorted(ot.intermediate_values) == [1, 2] and ot.intermediate_values[2] == pytest.approx(ot.value)
        assert ot.user_attrs["seeds"] == [0, 1] and ot.user_attrs["folds"] == [1]
        assert ot.user_attrs["ci_val_ua"] == pytest.approx([ci[row["trial_id"]].low, ci[row["trial_id"]].high])

    # MLflow: one run per trial, params, every epoch as a step, the final figures with their interval
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("pldistill-test").experiment_id])
    assert sorted(r.data.tags["trial_id"] for r in runs) == sorted(trials)
    for run in runs:
        trial_id = run.data.tags["trial_id"]
        row, rows = trials[trial_id], per_trial[trial_id]
        assert run.data.tags["sweep"] == "tracked" and run.info.status == "FINISHED"
        assert float(run.data.params["alpha"]) == pytest.approx(row["hp_alpha"])
        assert run.data.params["objective"] == "pl_distill"
        for key, column in (("epoch_val_ua", "val_ua"), ("epoch_train_loss_total", "train_loss_total")):
            history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
            assert [m.step for m in history] == [1, 2]
            assert [m.value for m in history] == pytest.approx([e[column] for e in rows])
        assert run.data.metrics["final_val_ua"] == pytest.approx(row["val_ua"])
        assert run.data.metrics["final_test_ua"] == pytest.approx(row["test_ua"])
        assert [run.data.metrics["final_val_ua_ci_low"], run.data.metrics["final_val_ua_ci_high"]] == \
            pytest.approx([ci[trial_id].low, ci[trial_id].high])

    # TensorBoard: one event stream per trial under the results folder
    for trial_id, rows in per_trial.items():
        events = EventAccumulator(str(results / "tracked" / "tensorboard" / trial_id))
        events.Reload()
        for tag, column in (("ray/tune/epoch_val_ua", "val_ua"), ("ray/tune/epoch_train_loss_cka", "train_loss_cka")):
            scalars = events.Scalars(tag)
            assert [s.step for s in scalars] == [1, 2]
            assert [s.value for s in scalars] == pytest.approx([e[column] for e in rows], rel=1e-6)

