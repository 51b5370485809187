"""A trial that replicates until decided (``train.replicates``), run for real on the tiny models: it adds
seeds after ``min_seeds`` until its validation interval is narrow enough or the cap is hit, reports
the mean over every run it trained, and resumes exactly from a checkpoint inside an added seed."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from _corpus import SMALL_CORPUS

from pldistill.config import TrialConfig
from pldistill.prepare import prepare_trial
from pldistill.train.checkpoint import load_state
from pldistill.train.trial import run_trial

_VOLATILE = ("wall_s", "samples_per_s", "attempt")


def _cfg(tmp_path, cache: str, half_width: float, max_seeds: int = 3) -> TrialConfig:
    # val_loss selects (and so is judged): a continuous figure, so seeds always differ in it. SFT reads
    # no teacher, so the tiny one is left as built (no fine-tune to wait for).
    return TrialConfig.model_validate({
        "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS},
        "model": {"teacher_finetune": {"enabled": False}},
        "train": {"epochs": 2, "batch_size": 8, "grad_accum": 2, "num_threads": 1, "max_steps_per_epoch": 2,
                  "select_metric": "val_loss", "seeds": [0, 1],
                  "replicates": {"min_seeds": 2, "max_seeds": max_seeds, "half_width": half_width}},
        "hparams": {"objective": "sft", "lora_dropout": 0.1, "warmup_ratio": 0.5},
        "output_dir": str(tmp_path / "run"), "cache_dir": cache,
    })


def _keep(into, reports):
    def report(metrics, row, ckpt):
        reports.append((metrics, row))
        if ckpt is not None:
            shutil.copytree(ckpt, into / f"s{row['seed']}e{row['epoch']}")
    return report


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in _VOLATILE} for r in rows]


@pytest.fixture(scope="module")
def capped(tmp_path_factory, tiny_cache):
    """A trial whose interval can never be narrow enough (1e-9 nats): 2 seeds, then one added, the cap."""
    tmp = tmp_path_factory.mktemp("capped")
    reports: list = []
    result = run_trial(prepare_trial(_cfg(tmp, tiny_cache, half_width=1e-9)), report=_keep(tmp / "ckpts", reports))
    return result, reports, tmp / "ckpts"


def test_an_imprecise_trial_adds_seeds_up_to_the_cap_and_reports_their_mean(capped):
    result, reports, _ = capped
    assert [(f.seed, f.fold) for f in result.folds] == [(0, 1), (1, 1), (2, 1)]  # seed 2: the next integer
    assert (result.seeds_used, result.seeds_stop) == (3, "cap")
    assert result.seeds_half_width is not None and 1e-9 < result.seeds_half_width < math.inf
    # only the trial's very last report carries its result; the end of min_seeds (seed 1) did not
    assert ["trial_result" in m for m, _ in reports] == [False] * 5 + [True]
    final = json.loads(reports[-1][0]["trial_result"])
    assert (final["seeds_used"], final["seeds_stop"]) == (3, "cap")
    # what Optuna sees is the mean over every run the trial trained, added seeds included
    assert reports[-1][0]["val_loss"] == pytest.approx(np.mean([f.best["val_loss"] for f in result.folds]))


@pytest.mark.parametrize("stop_after", ["s1e2", "s2e1"])
def test_a_kill_around_an_added_seed_resumes_exactly(tmp_path, tiny_cache, capped, stop_after):
    """s1e2: the end of min_seeds (the rule said go on); s2e1: in the middle of the added seed."""
    full, _, ckpts = capped
    state = load_state(ckpts / stop_after)
    assert state is not None and "trial_result" not in state.metrics
    rows = []
    resumed = run_trial(prepare_trial(_cfg(tmp_path, tiny_cache, half_width=1e-9)), resume=ckpts / stop_after,
                        report=lambda m, row, ckpt: rows.append((m, row)))
    assert [(r["seed"], r["epoch"]) for _, r in rows] == {"s1e2": [(2, 1), (2, 2)], "s2e1": [(2, 2)]}[stop_after]
    assert [_strip(f.epochs) for f in resumed.folds] == [_strip(f.epochs) for f in full.folds]
    assert [f.best for f in resumed.folds] == [f.best for f in full.folds]
    assert resumed.metrics == full.metrics
    assert (resumed.seeds_used, resumed.seeds_stop, resumed.seeds_half_width) == \
        (full.seeds_used, full.seeds_stop, full.seeds_half_width)
    assert resumed.restarts == 1 and "trial_result" in rows[-1][0]


def test_a_precise_trial_stops_at_min_seeds_and_a_restart_after_its_end_trains_nothing(tmp_path, tiny_cache):
    reports: list = []
    cfg = _cfg(tmp_path / "full", tiny_cache, half_width=100.0, max_seeds=4)
    result = run_trial(prepare_trial(cfg), report=_keep(tmp_path / "ckpts", reports))
    assert [f.seed for f in result.folds] == [0, 1]
    assert (result.seeds_used, result.seeds_stop) == (2, "precision")
    assert "trial_result" in reports[-1][0]
    # killed after its last epoch, before the end was recorded: the end is reported again, nothing retrains
    again: list = []
    resumed = run_trial(prepare_trial(cfg), resume=tmp_path / "ckpts" / "s1e2", report=lambda m, row, ckpt: again.append((m, ckpt)))
    assert len(again) == 1 and again[0][1] is None
    assert json.loads(again[0][0]["trial_result"])["seeds_stop"] == "precision"
    assert (resumed.seeds_used, resumed.seeds_stop, resumed.metrics) == (2, "precision", result.metrics)
