"""A trial resumed from an epoch's checkpoint ends exactly where an uninterrupted run does (no Ray).

Ray Train hands a restarted worker the trial's latest checkpoint; this is what the worker then does
with it. Dropout is on (lora_dropout 0.1) so the torch RNG state matters, and grad_accum 2 with a
warm-up makes the optimizer step count and the learning-rate schedule matter.
"""

from __future__ import annotations

import json
import shutil

import pytest
from _corpus import SMALL_CORPUS

from pldistill.config import TrialConfig
from pldistill.prepare import prepare_trial
from pldistill.train.checkpoint import load_state
from pldistill.train.trial import run_trial

_VOLATILE = ("wall_s", "samples_per_s", "attempt")


def _cfg(tmp_path, cache: str, **train) -> TrialConfig:
    return TrialConfig.model_validate({
        "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1, 2], "synth": SMALL_CORPUS},
        "train": {"epochs": 2, "batch_size": 8, "grad_accum": 2, "num_threads": 2, "max_steps_per_epoch": 2,
                  **train},
        "hparams": {"objective": "pl_distill", "lora_dropout": 0.1, "warmup_ratio": 0.5},
        "output_dir": str(tmp_path / "run"), "cache_dir": cache,
    })


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in _VOLATILE} for r in rows]


def _keep_checkpoints(into):
    def report(metrics, row, ckpt):
        if ckpt is not None:
            dest = into / f"f{row['fold']}e{row['epoch']}"
            shutil.copytree(ckpt, dest)
    return report


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_cache):
    """One trial run through (2 folds x 2 epochs), keeping every epoch's checkpoint."""
    tmp = tmp_path_factory.mktemp("full")
    ckpts = tmp / "ckpts"
    return run_trial(prepare_trial(_cfg(tmp, tiny_cache)), report=_keep_checkpoints(ckpts)), ckpts


@pytest.mark.parametrize("stop_after", ["f1e1", "f1e2", "f2e1"])
def test_resuming_from_any_epoch_reproduces_the_uninterrupted_trial(tmp_path, tiny_cache, uninterrupted,
                                                                     stop_after):
    full, ckpts = uninterrupted
    state = load_state(ckpts / stop_after)
    assert state is not None and state.attempt == 0

    reports = []
    resumed = run_trial(prepare_trial(_cfg(tmp_path / "resumed", tiny_cache)), resume=ckpts / stop_after,
                        report=lambda m, row, ckpt: reports.append((m, row)))
    # only the epochs after the checkpoint run again, marked as the second attempt
    done = {"f1e1": 1, "f1e2": 2, "f2e1": 3}[stop_after]
    assert len(reports) == 4 - done
    assert all(row["attempt"] == 1 for _, row in reports)
    assert resumed.restarts == 1 and full.restarts == 0
    # same epochs, same figures, same best epochs and mean as the run that never stopped
    for a, b in zip(full.folds, resumed.folds):
        assert _strip(a.epochs) == _strip(b.epochs)
        assert (a.best_epoch, a.best) == (b.best_epoch, b.best)
    assert resumed.metrics == full.metrics
    assert "trial_result" in reports[-1][0]


def test_resuming_after_the_last_epoch_reports_the_end_again_without_training(tmp_path, tiny_cache):
    ckpts = tmp_path / "ckpts"
    cfg = _cfg(tmp_path / "full", tiny_cache, epochs=1)
    cfg.data.folds = [1]
    full = run_trial(prepare_trial(cfg), report=_keep_checkpoints(ckpts))
    reports = []
    again = run_trial(prepare_trial(cfg), resume=ckpts / "f1e1", report=lambda m, row, ckpt: reports.append((m, row, ckpt)))
    assert len(reports) == 1 and reports[0][2] is None
    assert json.loads(reports[0][0]["trial_result"])["restarts"] == again.restarts == 1  # it did resume
    assert again.metrics == full.metrics
    assert again.folds[0].epochs == full.folds[0].epochs  # nothing retrained


def test_a_folder_without_trainer_state_is_not_a_checkpoint(tmp_path):
    assert load_state(tmp_path) is None


def test_resumed_trial_tests_with_the_best_epoch_saved_before_the_restart(tmp_path, tiny_cache):
    """With ``eval_test_each_epoch: false`` the fold is tested once, with the best epoch's weights;
    the checkpoint carries them, so a restart after the best epoch tests the same student."""
    ckpts = tmp_path / "ckpts"
    cfg = _cfg(tmp_path / "full", tiny_cache, epochs=3, eval_test_each_epoch=False)
    cfg.data.folds = [1]
    full = run_trial(prepare_trial(cfg), report=_keep_checkpoints(ckpts))
    resumed = run_trial(prepare_trial(cfg), resume=ckpts / "f1e2")
    assert resumed.folds[0].best == full.folds[0].best
    assert resumed.metrics["test_ua"] == full.metrics["test_ua"]


def test_a_trial_of_several_seeds_resumes_in_the_right_run(tmp_path, tiny_cache):
    """Runs are (seed, fold): a checkpoint of seed 0's run resumes into seed 3's, which then trains
    exactly as in the trial that never stopped."""
    def keep(into):
        def report(metrics, row, ckpt):
            if ckpt is not None:
                shutil.copytree(ckpt, into / f"s{row['seed']}f{row['fold']}e{row['epoch']}")
        return report

    cfg = _cfg(tmp_path / "full", tiny_cache, epochs=1, seeds=[0, 3])
    cfg.data.folds = [1]
    full = run_trial(prepare_trial(cfg), report=keep(tmp_path / "ckpts"))
    assert [(f.seed, f.fold) for f in full.folds] == [(0, 1), (3, 1)]
    state = load_state(tmp_path / "ckpts" / "s0f1e1")
    assert state is not None and state.run_index == 0
    again = _cfg(tmp_path / "resumed", tiny_cache, epochs=1, seeds=[0, 3])
    again.data.folds = [1]
    rows = []
    resumed = run_trial(prepare_trial(again), resume=tmp_path / "ckpts" / "s0f1e1", report=lambda m, row, ckpt: rows.append(row))
    assert [(r["seed"], r["fold"]) for r in rows] == [(3, 1)]  # only the run after the checkpoint
    assert [_strip(f.epochs) for f in resumed.folds] == [_strip(f.epochs) for f in full.folds]
    assert resumed.metrics == full.metrics
