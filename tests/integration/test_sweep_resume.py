"""A sweep survives its launcher being killed: SIGKILL at several points, resume, nothing lost.

One Optuna sweep of 4 trials (2 at a time, 2 epochs each) is launched as a real process and
SIGKILLed twice: while its first trials are mid-way (an epoch done, none finished), and once at
least one trial has finished. After each kill every process of its private Ray has gone too. Then
``pldistill-sweep resume`` (and, once, ``launch`` of the same file, which detects the earlier run)
carries on until the end. Before the first resume the test leaves what a kill in Tune's snapshot
race leaves (the checkpoint the snapshot names deleted, the next one there), which the resume must
repair. The results must then hold exactly ``num_samples`` trials, each once, each finished, each
epoch once; and Optuna's study (the searcher Tune restored, and the same study read from its journal
file) must hold the same 4 trials with the values in the results table, sampled by TPE rather than a
random fallback. The sweep asks for an MLflow server that is down: each launch says so in one line
and goes on.
"""

from __future__ import annotations

import glob
import os
import pickle
import re
import shutil
import tempfile

import optuna
import pytest
import yaml
from _procs import (
    ray_processes,
    sigkill_and_wait,
    start_cli,
    stop,
    tiny_sweep,
    tune_checkpoint_epochs,
    tune_checkpoint_paths,
    wait_for,
)

from pldistill.results import read_epochs, read_sweep_metas, read_trials

pytestmark = pytest.mark.slow

NUM_SAMPLES = 4
DEAD_MLFLOW = "http://127.0.0.1:9"


def _sweep(tmp_path, cache: str):
    path = tiny_sweep("resumable", tmp_path, cache, epochs=2, max_steps_per_epoch=12, fixed={"objective": "pl_distill"},
                      search={"algorithm": "optuna", "metric": "val_ua", "mode": "max", "num_samples": NUM_SAMPLES,
                              "max_concurrent_trials": 2, "seed": 3,
                              "space": {"alpha": {"type": "uniform", "low": 0.0, "high": 2.0},
                                        "temperature": {"type": "loguniform", "low": 0.5, "high": 8.0}}})
    # a tracking server that is down (nothing listens on port 9): each launch says so once and goes on
    doc = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**doc, "tracking": {"mlflow": {"tracking_uri": DEAD_MLFLOW}}}))
    return path


def _rows(results):
    try:
        return read_trials(results).to_pylist()
    except Exception:  # nothing written yet
        return []


def _epochs(results):
    try:
        return read_epochs(results).to_pylist()
    except Exception:
        return []


def _lose_snapshot_checkpoints(experiment):
    """Leave what a kill in Tune's race leaves: the checkpoint each unfinished trial's snapshot names
    is gone and a newer one is there (Tune had registered the next epoch's checkpoint and deleted the
    old one, num_to_keep=1, before its next snapshot). The newer one is the named one renamed to the
    next index, replacing any the trial wrote before the kill: so the trial still has an epoch to run
    after the resume, as this test expects of a trial killed mid-way."""
    named = tune_checkpoint_paths(experiment)
    assert named, "the snapshot names no checkpoint of an unfinished trial"
    for path in named:
        if not path.is_dir():  # the race itself happened
            continue
        newer = path.with_name(f"checkpoint_{int(path.name.split('_')[1]) + 1:06d}")
        shutil.rmtree(newer, ignore_errors=True)
        os.rename(path, newer)


def test_killed_launcher_resumes_to_exactly_num_samples_trials(tmp_path, tiny_cache):
    from pldistill.sweep import load_sweep
    from pldistill.sweep.launch import prepare_sweep

    path = _sweep(tmp_path, tiny_cache)
    prepare_sweep(load_sweep(path), log=lambda m: None)  # corpus, teacher, prior: not what this test kills
    results = tmp_path / "results"
    log = tmp_path / "cli.log"
    ray_tmp = tempfile.mkdtemp(prefix="rr", dir="/tmp")
    base = ["--num-cpus", "2", "--no-dashboard", "--quiet"]
    proc = None
    try:
        # 1. killed mid-trial: an epoch reported and its checkpoint in Tune's snapshot (one-worker
        # trials checkpoint through Tune; the epoch's row is written just before, and a kill before the
        # snapshot would leave nothing to resume from), no trial finished
        proc = start_cli(["launch", str(path), *base], ray_tmp, log)
        wait_for("a first checkpoint in Tune's snapshot",
                 lambda: bool(tune_checkpoint_epochs(results / "resumable" / "ray-tune" / "resumable")), 600, proc, log)
        assert not [r for r in _rows(results) if r["status"] == "completed"]
        sigkill_and_wait(proc, ray_tmp)
        assert read_sweep_metas(results)[0]["status"] == "running"  # nobody could say otherwise
        _lose_snapshot_checkpoints(results / "resumable" / "ray-tune" / "resumable")

        # 2. resumed with `launch` of the same file, killed once a trial has finished
        proc = start_cli(["launch", str(path), *base], ray_tmp, log)
        wait_for("a finished trial", lambda: any(r["status"] == "completed" for r in _rows(results)), 600,
                 proc, log)
        sigkill_and_wait(proc, ray_tmp)

        # 3. resumed with `resume NAME` to the end
        proc = start_cli(["resume", "resumable", "--results", str(results), *base], ray_tmp, log)
        assert proc.wait(timeout=900) == 0, log.read_text()[-4000:]
    finally:
        if proc is not None:
            stop(proc, ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    text = log.read_text()
    assert text.count("resuming sweep resumable") == 2, text[-3000:]
    # (the console wraps long lines)
    assert re.search(r"checkpoint_\d{6}\s+was\s+gone;\s+moved\s+checkpoint_\d{6}\s+there", text), text[-3000:]
    assert not ray_processes(ray_tmp)
    assert len(re.findall(r"MLflow\s+\(http://127\.0\.0\.1:9\):\s+off\s+for\s+the\s+rest\s+of\s+this\s+sweep", text)) == 3, \
        text[-3000:]

    rows = _rows(results)
    ids = [r["trial_id"] for r in rows]
    assert len(ids) == NUM_SAMPLES and len(set(ids)) == NUM_SAMPLES, ids
    assert all(r["status"] == "completed" for r in rows), [(r["trial_id"], r["status"], r["error"]) for r in rows]
    epochs = _epochs(results)
    keys = [(e["trial_id"], e["fold"], e["epoch"]) for e in epochs]
    assert len(keys) == len(set(keys)), "an epoch row was written twice"
    assert sorted(keys) == sorted((t, 1, e) for t in ids for e in (1, 2)), "an epoch row was lost"
    assert any(r["restarts"] for r in rows), "a trial killed mid-way should have resumed from its checkpoint"
    assert read_sweep_metas(results)[0]["status"] == "finished"

    # Optuna's study as Tune restored and finished it: same trials, same values, TPE
    exp = results / "resumable" / "ray-tune" / "resumable"
    # one file per launcher session, named by its start time (the final sync gives them all one mtime)
    state_file = max(glob.glob(str(exp / "searcher-state-*.pkl")))
    with open(state_file, "rb") as fh:  # OptunaSearch.__dict__, as this test's own run saved it: trusted
        optuna_search = pickle.load(fh)
    study = optuna_search["_ot_study"]
    assert type(study.sampler).__name__ == "TPESampler"
    finished = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(study.trials) == NUM_SAMPLES and len(finished) == NUM_SAMPLES
    by_trial = {tid: ot.number for tid, ot in optuna_search["_ot_trials"].items()}
    values = {t.number: t.value for t in study.trials}
    assert {by_trial[r["trial_id"]]: pytest.approx(r["val_ua"]) for r in rows} == values

    # the same study in its storage, where optuna-dashboard reads it: the sweep's trials, each once
    journal = optuna.storages.journal.JournalFileBackend(str(results / "resumable" / "optuna-journal.log"))
    stored = optuna.load_study(study_name="resumable", storage=optuna.storages.JournalStorage(journal)).trials
    assert [(t.number, t.state.name) for t in stored] == [(n, "COMPLETE") for n in range(NUM_SAMPLES)]
    by_alpha = {round(r["hp_alpha"], 12): r for r in rows}
    assert sorted(by_alpha) == sorted(round(t.params["alpha"], 12) for t in stored)
    for t in stored:
        row = by_alpha[round(t.params["alpha"], 12)]
        assert t.value == pytest.approx(row["val_ua"]) and t.user_attrs["seeds"] == row["seeds"] == [0]
        assert t.params["temperature"] == pytest.approx(row["hp_temperature"])
