"""Repairing Tune's view of trial checkpoints before a sweep resumes (no Ray: fake trials on a
temporary trial folder laid out as Tune lays it out, ``<trial>/checkpoint_000000``...)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from pldistill.sweep.resume import repair_lost_checkpoints
from pldistill.train.checkpoint import STATE_FILE, load_state


def _checkpoint(trial_dir: Path, index: int, epoch: int) -> Path:
    """A whole checkpoint: a file, and the trainer state naming it (as ``save_state`` writes them)."""
    path = trial_dir / f"checkpoint_{index:06d}"
    path.mkdir(parents=True)
    (path / "epoch.txt").write_text(str(epoch))
    (path / STATE_FILE).write_text(json.dumps({"format": 2, "files": ["epoch.txt"]}))
    return path


def _trial(trial_dir: Path, named: int | None, status: str = "PAUSED", trial_id: str = "t1"):
    ckpt = None if named is None else SimpleNamespace(path=str(trial_dir / f"checkpoint_{named:06d}"))
    return SimpleNamespace(trial_id=trial_id, status=status, checkpoint=ckpt)


def _layout(trial_dir: Path) -> dict[str, str]:
    return {p.name: (p / "epoch.txt").read_text() if (p / "epoch.txt").is_file() else ""
            for p in sorted(trial_dir.glob("checkpoint_*"))}


def test_the_race_the_next_checkpoint_takes_the_deleted_ones_place(tmp_path):
    # the snapshot names checkpoint_000000; Tune had registered checkpoint_000001 and deleted it
    _checkpoint(tmp_path, 1, epoch=2)
    repairs = repair_lost_checkpoints([_trial(tmp_path, named=0)])
    assert _layout(tmp_path) == {"checkpoint_000000": "2"}
    assert [(r.trial_id, r.path, r.source) for r in repairs] == [
        ("t1", tmp_path / "checkpoint_000000", tmp_path / "checkpoint_000001")]
    assert "checkpoint_000000 was gone; moved checkpoint_000001 there" in repairs[0].describe()


def test_the_first_checkpoint_after_the_named_one_wins_and_later_ones_go(tmp_path):
    # checkpoint_000002: the trial's next one, maybe half-copied when the launcher died
    _checkpoint(tmp_path, 1, epoch=2)
    _checkpoint(tmp_path, 2, epoch=3)
    repair_lost_checkpoints([_trial(tmp_path, named=0)])
    assert _layout(tmp_path) == {"checkpoint_000000": "2"}


def test_a_checkpoint_that_is_there_is_left_alone(tmp_path):
    _checkpoint(tmp_path, 0, epoch=1)
    _checkpoint(tmp_path, 1, epoch=2)  # newer, but Tune restores what its snapshot names
    assert repair_lost_checkpoints([_trial(tmp_path, named=0)]) == []
    assert _layout(tmp_path) == {"checkpoint_000000": "1", "checkpoint_000001": "2"}


def test_finished_trials_and_trials_without_a_checkpoint_are_left_alone(tmp_path):
    done, failed, fresh = tmp_path / "done", tmp_path / "failed", tmp_path / "fresh"
    for trial_dir in (done, failed, fresh):
        _checkpoint(trial_dir, 1, epoch=2)
    trials = [_trial(done, 0, "TERMINATED", "a"), _trial(failed, 0, "ERROR", "b"), _trial(fresh, None, "PENDING", "c")]
    assert repair_lost_checkpoints(trials) == []
    assert [_layout(d) for d in (done, failed, fresh)] == [{"checkpoint_000001": "2"}] * 3


def test_only_older_checkpoints_left_the_newest_of_them_is_used(tmp_path):
    _checkpoint(tmp_path, 0, epoch=1)
    _checkpoint(tmp_path, 1, epoch=2)
    repair_lost_checkpoints([_trial(tmp_path, named=3)])
    assert _layout(tmp_path) == {"checkpoint_000000": "1", "checkpoint_000003": "2"}


def test_no_checkpoint_left_the_trial_starts_again(tmp_path):
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    (repair,) = repair_lost_checkpoints([_trial(trial_dir, named=1)])
    assert repair.source is None and "the trial starts again" in repair.describe()
    # an empty folder: Tune can restore it, and the trial loop finds no trainer state in it
    assert (trial_dir / "checkpoint_000001").is_dir() and _layout(trial_dir) == {"checkpoint_000001": ""}
    assert load_state(trial_dir / "checkpoint_000001") is None


def test_each_trial_is_repaired_in_its_own_folder(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _checkpoint(a, 3, epoch=4)
    _checkpoint(b, 5, epoch=6)
    repairs = repair_lost_checkpoints([_trial(a, 2, trial_id="a"), _trial(b, 5, "RUNNING", "b")])
    assert [r.trial_id for r in repairs] == ["a"]
    assert (_layout(a), _layout(b)) == ({"checkpoint_000002": "4"}, {"checkpoint_000005": "6"})


def test_a_half_deleted_checkpoint_is_repaired_like_a_missing_one(tmp_path):
    # Tune was deleting checkpoint_000000 (num_to_keep=1) when the launcher died: its state is there,
    # a file the state names is not
    named = _checkpoint(tmp_path, 0, epoch=1)
    (named / "epoch.txt").unlink()
    _checkpoint(tmp_path, 1, epoch=2)
    repairs = repair_lost_checkpoints([_trial(tmp_path, named=0)])
    assert _layout(tmp_path) == {"checkpoint_000000": "2"}
    assert "checkpoint_000000 was half-deleted; moved checkpoint_000001 there" in repairs[0].describe()


def test_a_checkpoint_whose_state_was_deleted_first_is_repaired_too(tmp_path):
    named = _checkpoint(tmp_path, 0, epoch=1)
    (named / STATE_FILE).unlink()
    _checkpoint(tmp_path, 1, epoch=2)
    repair_lost_checkpoints([_trial(tmp_path, named=0)])
    assert _layout(tmp_path) == {"checkpoint_000000": "2"}


def test_a_missing_checkpoint_not_named_like_tunes_is_left_to_tune(tmp_path):
    # no index to order it by: nothing to repair it from, and no TypeError comparing None with an index
    _checkpoint(tmp_path, 1, epoch=2)
    trial = SimpleNamespace(trial_id="t1", status="PAUSED", checkpoint=SimpleNamespace(path=str(tmp_path / "mine")))
    assert repair_lost_checkpoints([trial]) == []
    assert _layout(tmp_path) == {"checkpoint_000001": "2"}
