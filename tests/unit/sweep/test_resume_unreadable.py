"""A resume sets an unreadable results file aside (never deletes it) and records its trial again from
what Tune's snapshot and the trial's checkpoint hold (no Ray: fake Tune trials, a real results store)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from _damage import damage

from pldistill.results import EpochRecord, ResultsStore, TrialRecord, read_epochs, read_trials
from pldistill.sweep.resume import reconcile
from pldistill.train import checkpoint


def _epoch_row(epoch: int) -> dict:
    return {"seed": 0, "fold": 1, "epoch": epoch, "train_loss_total": 1.0 / epoch, "val_ua": 0.4 + epoch / 10}


def _trial(tmp_path: Path, trial_id: str, status: str, epochs: int):
    """A Tune trial whose latest checkpoint holds the trainer state after ``epochs`` epochs."""
    ckpt = tmp_path / "tune" / trial_id / "checkpoint_000001"
    ckpt.mkdir(parents=True)
    state = {"format": checkpoint._FORMAT, "run_index": 0, "epoch": epochs, "step": 4 * epochs, "numpy_rng": {},
             "current": {"epochs": [_epoch_row(e) for e in range(1, epochs + 1)]}}
    (ckpt / checkpoint.STATE_FILE).write_text(json.dumps(state))
    return SimpleNamespace(trial_id=trial_id, status=status, checkpoint=SimpleNamespace(path=str(ckpt)),
                           last_result={"val_ua": 0.6})


class _Recorder:
    """Records which trials got their final row again (the real one writes it from ``last_result``)."""

    def __init__(self, store: ResultsStore) -> None:
        self.store, self.finals = store, []

    def record_final(self, trial) -> None:
        self.finals.append(trial.trial_id)
        self.store.write_trial(TrialRecord(trial_id=trial.trial_id, status="completed", val_ua=0.6))


@pytest.mark.parametrize("how", ["truncated", "empty", "wrong_schema"])
def test_resume_sets_unreadable_files_aside_and_records_their_trials_again(tmp_path, how) -> None:
    store = ResultsStore(tmp_path / "results", "sw")
    trials = {"done": _trial(tmp_path, "done", "TERMINATED", 2), "going": _trial(tmp_path, "going", "PAUSED", 1),
              "ok": _trial(tmp_path, "ok", "TERMINATED", 2)}
    for tid, trial in trials.items():
        store.write_trial(TrialRecord(trial_id=tid, status="completed" if trial.status == "TERMINATED" else "running"))
        store.write_epochs(tid, [EpochRecord.from_metrics("sw", tid, _epoch_row(e)) for e in (1, 2)])
    bad = [store.trial_path("done"), store.epochs_path("done"), store.epochs_path("going")]
    originals = {p: p.read_bytes() for p in bad}
    for p in bad:
        damage(p, "wrong_type" if how == "wrong_schema" and p.parent.name == "epochs" else how)
    damaged = {p: p.read_bytes() for p in bad}
    recorder = _Recorder(store)

    changes = reconcile(store, recorder, list(trials.values()))

    moved = {src: dest for src, dest, _ in changes["set_aside"]}
    assert sorted(moved) == sorted(bad)
    for src, dest in moved.items():  # kept, as it was, out of the readers' way
        assert dest.parent == store.sweep_dir / "unreadable" / src.parent.name
        assert dest.read_bytes() == damaged[src] != originals[src]
    assert recorder.finals == ["done"]  # the finished trial's row again, from Tune's snapshot
    rows = {r["trial_id"]: r["status"] for r in read_trials(store.root).to_pylist()}
    assert rows == {"done": "completed", "going": "running", "ok": "completed"}
    epochs = sorted((r["trial_id"], r["epoch"]) for r in read_epochs(store.root).to_pylist())
    # done: both epochs from its checkpoint; going: its one checkpointed epoch (it writes the rest itself)
    assert epochs == [("done", 1), ("done", 2), ("going", 1), ("ok", 1), ("ok", 2)]
    assert reconcile(store, recorder, list(trials.values()))["set_aside"] == []  # once


def test_a_launch_clears_what_a_killed_launcher_left_in_the_sweep_folder(tmp_path) -> None:
    from pldistill.sweep.resume import remove_stale_sweep_temps

    sweep_dir = tmp_path / "sw"
    store = ResultsStore(tmp_path, "sw")
    store.write_trial(TrialRecord(trial_id="t0", status="completed"))
    (sweep_dir / "trials" / ".t1.parquet.tmp-abc").write_bytes(b"PAR1 half")
    (sweep_dir / ".sweep.json.tmp-def").write_text("{")
    deep = sweep_dir / "runs" / "t1" / "seed_0" / "fold_1" / ".best.tmp-ghi"
    deep.mkdir(parents=True)
    assert remove_stale_sweep_temps(sweep_dir) == 3
    left = sorted(str(p.relative_to(sweep_dir)) for p in sweep_dir.rglob("*"))
    assert left == ["epochs", "runs", "runs/t1", "runs/t1/seed_0", "runs/t1/seed_0/fold_1", "trials", "trials/t0.parquet"]
