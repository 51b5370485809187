"""The sweep file's tracking section, the Optuna study in its storage (driven as Tune drives the searcher,
no Ray cluster), and a tracker that cannot reach its server."""

from __future__ import annotations

import json
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

import pytest

from pldistill.sweep import load_sweep
from pldistill.sweep.load import SweepFileError

optuna = pytest.importorskip("optuna")
pytest.importorskip("ray")
from scipy import stats  # noqa: E402

from pldistill.sweep.space import build_tune_search  # noqa: E402
from pldistill.sweep.study import JOURNAL_FILE, prepare_study, storage_label  # noqa: E402

SWEEP = """\
name: tracked
fixed: {objective: pl_distill}
search:
  algorithm: %s
  num_samples: 4
  max_concurrent_trials: 4
  seed: 1
  space:
    alpha: {type: uniform, low: 0.0, high: 2.0}
    weighting: {type: choice, values: [uniform, attention_last]}
"""


def _sweep(tmp_path: Path, tracking: str = "", algorithm: str = "optuna"):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(SWEEP % algorithm) + tracking)
    return path


def test_tracking_section_is_typed(tmp_path: Path) -> None:
    sweep = load_sweep(_sweep(tmp_path, "tracking:\n  mlflow: {tracking_uri: 'sqlite:///m.db', experiment: e}\n"
                                        "  tensorboard: true\n  optuna_storage: 'sqlite:///o.db'\n"), cwd=tmp_path)
    assert sweep.tracking.mlflow.tracking_uri == "sqlite:///m.db" and sweep.tracking.mlflow.experiment == "e"
    assert sweep.tracking.tensorboard and sweep.tracking.optuna_storage == "sqlite:///o.db"
    plain = load_sweep(_sweep(tmp_path), cwd=tmp_path)
    assert plain.tracking.mlflow is None and not plain.tracking.tensorboard
    with pytest.raises(SweepFileError) as err:
        load_sweep(_sweep(tmp_path, "tracking: {wandb: true}\n"), cwd=tmp_path)
    assert "tracking.wandb: unknown key; valid keys: optuna_storage, mlflow, tensorboard" in str(err.value)


@pytest.mark.parametrize(("key", "module", "text"), [("mlflow", "mlflow", "tracking: {mlflow: {}}\n"),
                                                     ("tensorboard", "tensorboard", "tracking: {tensorboard: true}\n")])
def test_tracker_without_its_package_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys, key, module, text):
    from pldistill.cli import run_app

    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: find_spec gives None
    path = _sweep(tmp_path, text)
    with pytest.raises(SweepFileError) as err:
        load_sweep(path, cwd=tmp_path)
    assert err.value.problems == [f"{path}: tracking.{key}: needs the tracking extra ({module} is not installed): "
                                  'pip install -e ".[tracking]" (line 11)']
    assert run_app(["validate", str(path)]) != 0
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err and 'pip install -e ".[tracking]"' in out.out + out.err


def test_optuna_storage_is_checked(tmp_path: Path) -> None:
    with pytest.raises(SweepFileError) as err:
        load_sweep(_sweep(tmp_path, "tracking: {optuna_storage: 'not a url'}\n"), cwd=tmp_path)
    assert "tracking.optuna_storage: expected an RDB URL" in str(err.value)
    with pytest.raises(SweepFileError) as err:
        load_sweep(_sweep(tmp_path, "tracking: {optuna_storage: 'sqlite:///o.db'}\n", algorithm="random"),
                   cwd=tmp_path)
    assert "tracking.optuna_storage: only for algorithm optuna" in str(err.value)


def _payload(values: dict[int, float]) -> str:
    """A whole trial result as the last report carries it: one fold, one run per seed."""
    from pldistill.train.loop import FoldResult
    from pldistill.train.trial import TrialResult

    folds = [FoldResult(fold=1, best_epoch=2, best={"val_ua": v, "test_ua": v / 2}, teacher={}, seed=s)
             for s, v in values.items()]
    mean = sum(values.values()) / len(values)
    return json.dumps(asdict(TrialResult(folds=folds, metrics={"val_ua": mean, "test_ua": mean / 2}, wall_s=1.0,
                                         samples_per_s=1.0, world_size=1)))


def _searcher(sweep, storage):
    ts = build_tune_search(sweep, storage)
    assert ts.search_alg.set_search_properties(ts.metric, ts.mode, ts.param_space)
    return ts.search_alg


def _journal(sweep):
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage_label(sweep)))


def test_study_holds_params_intermediate_values_value_and_attrs(tmp_path: Path) -> None:
    sweep = load_sweep(_sweep(tmp_path), cwd=tmp_path)
    alg = _searcher(sweep, prepare_study(sweep, resuming=False))
    config = alg.suggest("t0")
    for step, value in ((1, 0.3), (2, 0.45)):
        alg.on_trial_result("t0", {"val_ua": value, "training_iteration": step})
    alg.on_trial_complete("t0", {"val_ua": 0.45, "training_iteration": 2, "trial_result": _payload({0: 0.4, 7: 0.5})})
    pruned = alg.suggest("t1")
    alg.on_trial_result("t1", {"val_ua": 0.2, "training_iteration": 1})
    alg.on_trial_complete("t1", {"val_ua": 0.2, "training_iteration": 1})  # ASHA stopped it: no whole result

    assert storage_label(sweep) == str(tmp_path / "results" / "tracked" / JOURNAL_FILE)
    study = optuna.load_study(study_name="tracked", storage=_journal(sweep))
    first, second = study.trials
    assert first.params == config and second.params == pruned
    assert first.intermediate_values == {1: 0.3, 2: 0.45} and first.value == pytest.approx(0.45)
    low, high = stats.t.interval(0.95, 1, loc=0.45, scale=stats.sem([0.4, 0.5]))
    assert first.user_attrs["seeds"] == [0, 7] and first.user_attrs["folds"] == [1]
    assert first.user_attrs["ci_val_ua"] == pytest.approx([low, high])
    assert first.user_attrs["ci_test_ua"] == pytest.approx([low / 2, high / 2])
    assert second.user_attrs == {"stopped_early": True} and second.value == pytest.approx(0.2)


def test_resume_continues_the_study_with_no_trial_twice(tmp_path: Path) -> None:
    """The storage runs ahead of Tune's snapshot: a trial asked for after it, one told after it."""
    sweep = load_sweep(_sweep(tmp_path), cwd=tmp_path)
    alg = _searcher(sweep, prepare_study(sweep, resuming=False))
    alg.suggest("t0")
    alg.on_trial_complete("t0", {"val_ua": 0.5, "training_iteration": 1, "trial_result": _payload({0: 0.5})})
    alg.suggest("t1")
    alg.save(str(tmp_path / "snapshot.pkl"))  # Tune's snapshot: t0 done, t1 running
    alg.on_trial_result("t1", {"val_ua": 0.6, "training_iteration": 1})
    alg.on_trial_complete("t1", {"val_ua": 0.6, "training_iteration": 1, "trial_result": _payload({0: 0.6})})
    lost = alg.suggest("t2")  # then the launcher is killed

    again = _searcher(sweep, prepare_study(sweep, resuming=True))
    again.restore(str(tmp_path / "snapshot.pkl"))
    # Tune resumes t1 from its last checkpoint: it reports and completes once more
    again.on_trial_result("t1", {"val_ua": 0.6, "training_iteration": 1})
    again.on_trial_complete("t1", {"val_ua": 0.6, "training_iteration": 1, "trial_result": _payload({0: 0.6})})
    assert again.suggest("t3") == lost  # the trial asked for before the kill, not a fifth one
    again.on_trial_complete("t3", {"val_ua": 0.7, "training_iteration": 1, "trial_result": _payload({0: 0.7})})
    assert again.suggest("t4") not in (None, lost)

    study = optuna.load_study(study_name="tracked", storage=_journal(sweep))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "COMPLETE", "RUNNING"]
    assert [t.value for t in study.trials[:3]] == pytest.approx([0.5, 0.6, 0.7])



def test_fresh_start_clears_a_journal_nothing_resumes_and_refuses_a_taken_rdb_name(tmp_path: Path) -> None:
    from pldistill.errors import InputError

    sweep = load_sweep(_sweep(tmp_path), cwd=tmp_path)
    _searcher(sweep, prepare_study(sweep, resuming=False)).suggest("t0")
    assert len(optuna.load_study(study_name="tracked", storage=_journal(sweep)).trials) == 1
    _searcher(sweep, prepare_study(sweep, resuming=False))  # started afresh: the earlier start's trial is gone
    assert len(optuna.load_study(study_name="tracked", storage=_journal(sweep)).trials) == 0

    db = f"sqlite:///{tmp_path / 'o.db'}"
    rdb = load_sweep(_sweep(tmp_path, f"tracking: {{optuna_storage: '{db}'}}\n"), cwd=tmp_path)
    _searcher(rdb, prepare_study(rdb, resuming=False)).suggest("t0")
    with pytest.raises(InputError, match=r"tracking.optuna_storage: .*o.db already holds a study named 'tracked'"):
        prepare_study(rdb, resuming=False)
    assert len(optuna.load_study(study_name="tracked", storage=db).trials) == 1  # left as it was
    assert prepare_study(rdb, resuming=True) is not None


def test_tracker_that_cannot_reach_its_server_says_so_once_and_stays_off(tmp_path: Path) -> None:
    from pldistill.sweep.tracking import tracking_callbacks

    pytest.importorskip("mlflow")
    sweep = load_sweep(_sweep(tmp_path, "tracking: {mlflow: {tracking_uri: 'http://127.0.0.1:9'}}\n"), cwd=tmp_path)
    said: list[str] = []
    (guarded,) = tracking_callbacks(sweep, said.append)
    guarded.setup(stop=None, num_samples=4, total_num_samples=4)  # Tune's first call: nothing raised
    guarded.on_trial_start(iteration=0, trials=[], trial=object())
    guarded.on_experiment_end(trials=[])
    assert len(said) == 1 and said[0].startswith("MLflow (http://127.0.0.1:9): off for the rest of this sweep ("), said
    assert "\n" not in said[0]


class _Trial:
    """What Ray Tune's loggers read of a trial (a resumed launcher has a new object for the same id)."""

    def __init__(self, trial_id: str, config: dict) -> None:
        self.trial_id, self.config, self.last_result = trial_id, config, {}

    def __str__(self) -> str:
        return f"trial_driver_{self.trial_id}"


def test_mlflow_run_per_trial_goes_on_after_a_resume(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from pldistill.sweep._trackers import MLflowTrialCallback

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = load_sweep(_sweep(tmp_path, f"tracking: {{mlflow: {{tracking_uri: '{uri}'}}}}\n"), cwd=tmp_path)
    for step, value in ((1, 0.3), (2, 0.4)):  # one epoch, the launcher killed, the next epoch after a resume
        callback = MLflowTrialCallback(sweep, uri, "tracked")
        callback.setup()
        trial = _Trial("ab12_00000", {"alpha": 0.5, "weighting": "uniform"})
        callback.log_trial_start(trial)
        callback.log_trial_result(step, trial, {"training_iteration": step, "epoch_val_ua": value, "nodes": "[]"})
    trial.last_result = {"training_iteration": 2, "trial_result": _payload({0: 0.4, 1: 0.5})}
    callback.log_trial_end(trial)

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    assert run.info.run_name == "ab12_00000" and run.info.status == "FINISHED"
    assert run.data.tags["sweep"] == "tracked" and run.data.tags["trial_id"] == "ab12_00000"
    assert run.data.params["alpha"] == "0.5" and run.data.params["objective"] == "pl_distill"
    history = client.get_metric_history(run.info.run_id, "epoch_val_ua")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.3), (2, 0.4)]
    low, high = stats.t.interval(0.95, 1, loc=0.45, scale=stats.sem([0.4, 0.5]))
    assert run.data.metrics["final_val_ua"] == pytest.approx(0.45)
    assert [run.data.metrics["final_val_ua_ci_low"], run.data.metrics["final_val_ua_ci_high"]] == \
        pytest.approx([low, high])
