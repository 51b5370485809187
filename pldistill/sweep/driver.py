"""The Tune trial driver: resolve the sampled config and run it as a Ray Train ``TorchTrainer``.

Ray 2.60 (Train V2) does not accept ``Tuner(TorchTrainer(...))``; the supported pattern is a Tune
function trainable that builds a ``TorchTrainer`` and calls ``fit()``, with ``TuneReportCallback``
forwarding rank 0's per-epoch metrics to Tune (and so to OptunaSearch and ASHA).

The driver holds no CPU (a custom ``pldistill_driver`` resource limits how many run at once); its
workers hold the trial's CPUs/GPUs. It writes nothing itself: :class:`~pldistill.sweep.recorder.
TrialRecorder` in the launching process records every trial's fate. A failing fit raises, so Tune
marks the trial failed and tells the searcher, and the sweep goes on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["trial_driver", "DRIVER_RESOURCE", "TrialDivergedError"]

DRIVER_RESOURCE = "pldistill_driver"


def trial_driver(config: dict[str, Any], sweep: Any) -> None:
    """Tune function trainable. ``sweep`` (a validated ``SweepConfig``) comes via ``tune.with_parameters``."""
    from ray import tune
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from pldistill.sweep.space import resolve_trial_config
    from pldistill.sweep.worker import DIVERGED_FILE, worker_loop

    trial_id = tune.get_context().get_trial_id()
    results_root = Path(sweep.results).resolve()
    cfg = resolve_trial_config(sweep, config, trial_id=trial_id)
    diverged = Path(cfg.output_dir) / DIVERGED_FILE
    if diverged.is_file():  # a retry of a trial that diverged: it would diverge again
        raise TrialDivergedError(diverged.read_text())
    res = sweep.resources
    use_gpu = res.gpus_per_worker > 0
    per_worker = {"CPU": res.cpus_per_worker, **({"GPU": res.gpus_per_worker} if use_gpu else {})}
    trainer = TorchTrainer(
        train_loop_per_worker=worker_loop,
        train_loop_config={"trial": json.loads(cfg.to_json()), "sweep": sweep.name, "trial_id": trial_id,
                           "results": str(results_root)},
        torch_config=TorchConfig(backend=res.effective_backend),
        scaling_config=ScalingConfig(num_workers=res.workers_per_trial, use_gpu=use_gpu,
                                     resources_per_worker=per_worker, placement_strategy=res.placement_strategy),
        run_config=RunConfig(name=f"train-{trial_id}", storage_path=str(results_root / sweep.name / "ray-train"),
                             callbacks=[TuneReportCallback()],
                             # A restarted worker group resumes from the latest epoch checkpoint; an
                             # interrupted sweep's trial does too (same run name and storage path).
                             failure_config=FailureConfig(max_failures=sweep.failures.worker_restarts),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    trainer.fit()
    if diverged.is_file():
        raise TrialDivergedError(diverged.read_text())


class TrialDivergedError(FloatingPointError):
    """The trial's loss became NaN or infinite: recorded as failed, told to the searcher as a failure."""
