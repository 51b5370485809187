"""Launch a sweep: validate, prepare shared artefacts once, start or attach to Ray, run Tune.

Without an address a private local Ray is started (``address="local"``, dashboard on loopback);
with one, pldistill attaches to that cluster. Everything a trial writes lands in Parquet under
``<results>/<sweep name>/`` while the sweep runs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pldistill.errors import InputError, PldistillError

__all__ = ["LaunchOptions", "LaunchSummary", "launch", "prepare_shared"]


@dataclass
class LaunchOptions:
    address: str | None = None
    num_cpus: int | None = None
    dashboard: bool = True
    progress: bool = True
    ray_tmpdir: str | None = None


@dataclass
class LaunchSummary:
    name: str
    results: Path
    counts: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    dashboard_url: str | None = None


def prepare_shared(sweep: Any, log=print) -> None:
    """Work every trial needs and none should repeat, done once before any trial starts: the
    synthetic corpus and features, the fine-tuned teacher of each fold and the tiny student's
    prior (all cached by hash). Trials then only read them, by path."""
    from pldistill.sweep.space import resolve_trial_config
    from pldistill.train.dataset import prepare_fold
    from pldistill.train.student_prior import ensure_student_llm
    from pldistill.train.teacher import ensure_teacher

    cfg = resolve_trial_config(sweep, {}, trial_id="prepare")
    if cfg.train.num_threads:  # as trials do: oversubscribed threads made the fine-tune ~10x slower
        import torch

        torch.set_num_threads(cfg.train.num_threads)
    for fold in cfg.data.folds:
        data = prepare_fold(cfg, fold)
        if cfg.model.teacher == "tiny" or cfg.model.teacher_finetune.enabled:
            teacher, _ = ensure_teacher(cfg, data, log=log)
            ensure_student_llm(cfg, teacher.tokenizer, log=log)


def _start_ray(sweep: Any, opts: LaunchOptions) -> str | None:
    import ray

    from pldistill.sweep.driver import DRIVER_RESOURCE

    slots = sweep.search.max_concurrent_trials
    if opts.address:
        ctx = ray.init(address=opts.address, log_to_driver=False)
        if ray.cluster_resources().get(DRIVER_RESOURCE, 0) < 1:
            raise PldistillError(
                f"cluster at {opts.address} has no '{DRIVER_RESOURCE}' resource; start its head with "
                f"ray start --head --resources='{{\"{DRIVER_RESOURCE}\": 64}}' (cluster.yaml does this)")
    else:
        kwargs: dict[str, Any] = {}
        if opts.ray_tmpdir:
            kwargs["_temp_dir"] = opts.ray_tmpdir
        ctx = ray.init(address="local", num_cpus=opts.num_cpus or os.cpu_count(), log_to_driver=False,
                       resources={DRIVER_RESOURCE: slots}, include_dashboard=opts.dashboard,
                       dashboard_host="127.0.0.1", configure_logging=False, **kwargs)
    url = getattr(ctx, "dashboard_url", None)
    return f"http://{url}" if url and not str(url).startswith("http") else url


def launch(sweep_path: Path, opts: LaunchOptions | None = None, console=None) -> LaunchSummary:
    """Run the sweep in ``sweep_path`` to completion; returns counts of completed/failed trials."""
    from pldistill.results import ResultsStore, git_commit
    from pldistill.sweep.config import load_sweep
    from pldistill.sweep.space import build_tune_search, check_resources

    opts = opts or LaunchOptions()
    sweep = load_sweep(sweep_path)
    results = Path(sweep.results).resolve()
    store = ResultsStore(results, sweep.name)
    store.check_writable()
    say = console.print if console is not None else print
    prepare_shared(sweep, log=lambda m: say(f"[dim]{m}[/dim]") if console is not None else print(m))
    import ray
    from ray import tune

    from pldistill import __version__
    from pldistill.sweep.driver import DRIVER_RESOURCE, trial_driver
    from pldistill.sweep.progress import SweepProgress
    from pldistill.sweep.reaper import PlacementGroupReaper
    from pldistill.sweep.recorder import TrialRecorder

    started = time.perf_counter()
    url = _start_ray(sweep, opts)
    try:
        say(f"Ray dashboard: {url}" if url else "Ray dashboard: not started")
        problems = check_resources(sweep, ray.cluster_resources())
        if problems:
            raise InputError(sweep_path, "resources", "; ".join(problems))
        store.write_sweep_meta({"name": sweep.name, "sweep_file": str(Path(sweep_path).resolve()),
                                "config": sweep.model_dump(mode="json"), "status": "running",
                                "started_at": datetime.now(timezone.utc).isoformat(),
                                "pldistill_version": __version__, "git_commit": git_commit(),
                                "metric": sweep.search.metric, "mode": sweep.search.mode})
        search = build_tune_search(sweep)
        progress = SweepProgress(search.num_samples_total, search.metric, search.mode, console=console,
                                 enabled=opts.progress)
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(trial_driver, sweep=sweep), {DRIVER_RESOURCE: 1}),
            param_space=search.param_space,
            # The search algorithm (ConcurrencyLimiter / BasicVariantGenerator) holds the concurrency limit.
            tune_config=tune.TuneConfig(**search.tune_config_kwargs()),
            run_config=tune.RunConfig(name=sweep.name, storage_path=str(results / sweep.name / "ray-tune"),
                                      failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                                      callbacks=[TrialRecorder(sweep, results), PlacementGroupReaper(), progress],
                                      verbose=0),
        )
        with progress:
            grid = tuner.fit()
        counts = {"completed": sum(1 for r in grid if r.error is None), "failed": grid.num_errors,
                  "total": len(grid)}
        store.write_sweep_meta({**store.read_sweep_meta(), "status": "finished", "counts": counts,
                                "ended_at": datetime.now(timezone.utc).isoformat()})
    finally:
        ray.shutdown()  # stops the private Ray, or disconnects from the cluster
    return LaunchSummary(name=sweep.name, results=results, counts=counts,
                         wall_s=time.perf_counter() - started, dashboard_url=url)
