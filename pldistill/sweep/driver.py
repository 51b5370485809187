"""The Tune trial driver: resolve the sampled config and run it, in its own process or as a Ray Train run.

A trial of one worker runs its loop right here, in the Tune trial's process (:func:`~pldistill.sweep.
worker.trial_loop`): it needs no collective, and a Ray Train worker group would cost it a controller
and a worker process to start (about 10 s each trial, against ~1 s epochs in the smoke sweep). Such a
driver holds the worker's CPUs/GPUs itself and no driver slot (:func:`trial_resources`); Tune
restarts a dead one from the trial's last checkpoint (``failures.worker_restarts`` count towards
Tune's retries: :func:`trial_max_failures`).

A trial of several workers is a Ray Train ``TorchTrainer``. Ray 2.60 (Train V2) does not accept
``Tuner(TorchTrainer(...))``; the supported pattern is a Tune function trainable that builds a
``TorchTrainer`` and calls ``fit()``, with ``TuneReportCallback`` forwarding rank 0's per-epoch
metrics to Tune (and so to OptunaSearch and ASHA). That driver holds no CPU (a custom
``pldistill_driver`` resource limits how many run at once); its workers hold the trial's CPUs/GPUs.

Either way the driver writes no trial row: :class:`~pldistill.sweep.recorder.TrialRecorder` in the
launching process records every trial's fate. A failing fit raises, so Tune
marks the trial failed and tells the searcher, and the sweep goes on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["trial_driver", "DRIVER_RESOURCE", "TrialDivergedError", "runs_in_process", "trial_resources",
           "trial_max_failures"]

DRIVER_RESOURCE = "pldistill_driver"


def runs_in_process(resources: Any) -> bool:
    """Whether a trial of ``resources`` (a ``ResourcesConfig``) runs in the Tune trial's own process:
    one worker, so no process group and no collective (``run_trial`` wraps nothing when alone)."""
    return resources.workers_per_trial == 1


def trial_resources(resources: Any) -> dict[str, float]:
    """What the Tune trial itself holds: a driver slot when its workers are a Ray Train group, or the
    worker's CPUs/GPUs when it trains in process. Not both: one bundle must fit on one node, and the
    driver slots live on the head (which may have no CPU to give); the search algorithm's
    concurrency limit already caps how many run at once."""
    if not runs_in_process(resources):
        return {DRIVER_RESOURCE: 1}
    return {"CPU": resources.cpus_per_worker,
            **({"GPU": resources.gpus_per_worker} if resources.gpus_per_worker > 0 else {})}


def trial_max_failures(sweep: Any) -> int:
    """Tune's ``FailureConfig.max_failures``. In process, a dead worker is a dead trial process, which
    only Tune restarts: it absorbs the worker restarts as well as the trial retries."""
    retries = sweep.failures.trial_retries
    return retries + sweep.failures.worker_restarts if runs_in_process(sweep.resources) else retries


def trial_driver(config: dict[str, Any], sweep: Any) -> None:
    """Tune function trainable. ``sweep`` (a validated ``SweepConfig``) comes via ``tune.with_parameters``."""
    from ray import tune

    from pldistill.sweep.space import resolve_trial_config
    from pldistill.sweep.worker import DIVERGED_FILE, trial_loop

    trial_id = tune.get_context().get_trial_id()
    results_root = Path(sweep.results).resolve()
    cfg = resolve_trial_config(sweep, config, trial_id=trial_id)
    diverged = Path(cfg.output_dir) / DIVERGED_FILE
    if diverged.is_file():  # a retry of a trial that diverged: it would diverge again
        raise TrialDivergedError(diverged.read_text())
    loop_config = {"trial": json.loads(cfg.to_json()), "sweep": sweep.name, "trial_id": trial_id,
                   "results": str(results_root)}
    if runs_in_process(sweep.resources):
        trial_loop(loop_config)
    else:
        _fit_torch_trainer(sweep, trial_id, loop_config)
    if diverged.is_file():
        raise TrialDivergedError(diverged.read_text())


def _fit_torch_trainer(sweep: Any, trial_id: str, loop_config: dict[str, Any]) -> None:
    """The trial as a Ray Train run of ``workers_per_trial`` workers (:func:`~pldistill.sweep.worker.worker_loop`)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from pldistill.sweep.worker import worker_loop

    results_root = Path(loop_config["results"])
    res = sweep.resources
    use_gpu = res.gpus_per_worker > 0
    per_worker = {"CPU": res.cpus_per_worker, **({"GPU": res.gpus_per_worker} if use_gpu else {})}
    trainer = TorchTrainer(
        train_loop_per_worker=worker_loop,
        train_loop_config=loop_config,
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


class TrialDivergedError(FloatingPointError):
    """The trial's loss became NaN or infinite: recorded as failed, told to the searcher as a failure."""
