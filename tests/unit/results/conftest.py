"""A small results folder: two sweeps with different hyperparameters, one of them half finished."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest

from pldistill.results import EpochRecord, FoldMetrics, ResultsStore, TrialRecord

T0 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def make_trial(trial_id: str, status: str = "completed", test_ua: float | None = 0.5, **kw: object) -> TrialRecord:
    """A trial with plausible values; ``kw`` overrides fields."""
    done = status == "completed"
    fields: dict[str, object] = dict(
        trial_id=trial_id, status=status, objective="pl_distill", dataset="synthetic", folds=[1, 2],
        hparams={"alpha": 1.0, "weighting": "uniform", "kl_t2_scaling": False, "lora_rank": 8},
        best_epoch=2 if done else None, val_ua=(test_ua + 0.01) if done and test_ua is not None else None,
        val_wa=0.5 if done else None, test_ua=test_ua if done else None, test_wa=0.55 if done else None,
        test_f1=0.45 if done else None,
        fold_metrics=[FoldMetrics(fold=1, best_epoch=2, test_ua=test_ua), FoldMetrics(fold=2, best_epoch=1)]
        if done else [],
        losses={"total": 1.25, "ce": 0.5, "cka": 0.25, "kl_audio": 0.2, "kl_response": 0.3} if done else {},
        wall_s=12.5, samples_per_s=40.0, num_workers=2, nodes=["node-a", "node-b"],
        config_json='{"name": "t"}', started_at=T0, ended_at=T0 + dt.timedelta(minutes=3) if done else None,
    )
    fields.update(kw)
    return TrialRecord(**fields)  # type: ignore[arg-type]


def make_epochs(n: int = 3, fold: int = 1) -> list[EpochRecord]:
    return [EpochRecord(fold=fold, epoch=e, train_losses={"total": 1.0 / (e + 1), "ce": 0.5}, val_ua=0.4 + e / 10,
                        val_loss=1.0 - e / 10, test_ua=0.3 + e / 10, lr=1e-3, samples_per_s=50.0, wall_s=2.0)
            for e in range(n)]


@pytest.fixture(scope="session")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ablation``: weighting grid, one running, one failed, one pruned, one NaN; ``tpe``: other hp
    columns (temperature, a custom string), no sweep.json metric. Shared: tests must not write to it."""
    root = tmp_path_factory.mktemp("shared") / "results"
    abl = ResultsStore(root, "ablation")
    abl.write_sweep_meta({"sweep_file": "sweeps/ablation_weighting_grid.yaml", "config": {"grid": True},
                          "metric": "val_ua", "mode": "max", "started_at": T0})
    trials = [
        make_trial("t0", test_ua=0.60),
        make_trial("t1", test_ua=0.70),
        make_trial("t2", test_ua=0.65, hparams={"alpha": 0.5, "weighting": "attention_last",
                                                 "kl_t2_scaling": True, "lora_rank": 4}),
        make_trial("t3", status="running", hparams={"alpha": 0.5, "weighting": "attention_last",
                                                     "kl_t2_scaling": True, "lora_rank": 4}),
        make_trial("t4", status="failed", error="RuntimeError: boom"),
        make_trial("t5", status="pruned"),
        make_trial("t6", test_ua=math.nan, hparams={"alpha": 1.0, "weighting": "attention_sharpened",
                                                     "kl_t2_scaling": False, "lora_rank": 8}),
    ]
    for t in trials:
        abl.write_trial(t)
        abl.write_epochs(t.trial_id, make_epochs())
    tpe = ResultsStore(root, "tpe")
    tpe.write_sweep_meta({"config": {"sampler": "tpe"}})
    tpe.write_trial(make_trial("x0", test_ua=0.80, hparams={"temperature": 3.0, "tag": "a"}))
    tpe.write_trial(make_trial("x1", status="running", hparams={"temperature": 1.5, "tag": "b"}))
    tpe.write_epochs("x0", make_epochs(2))
    return root


@pytest.fixture
def trial() -> object:
    """The :func:`make_trial` factory."""
    return make_trial


@pytest.fixture
def epochs() -> object:
    """The :func:`make_epochs` factory."""
    return make_epochs
