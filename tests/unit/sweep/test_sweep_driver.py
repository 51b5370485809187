"""Where a trial trains: one worker in the Tune trial's own process, several as a Ray Train run; what
the Tune trial then holds and how often Tune restarts it. And the teacher-cache build uses the
caller's Ray when given one (a launch starts Ray once)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pldistill.sweep import SweepConfig, load_sweep
from pldistill.sweep.driver import DRIVER_RESOURCE, runs_in_process, trial_max_failures, trial_resources

GOOD = """\
name: t
search:
  algorithm: optuna
  num_samples: 4
  space:
    alpha: {type: uniform, low: 0.0, high: 2.0}
"""


def _sweep(tmp_path: Path, extra: str) -> SweepConfig:
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(GOOD + extra))
    return load_sweep(path)


def test_one_worker_trains_in_the_trial_holding_the_workers_resources(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, "resources: {cpus_per_worker: 2, gpus_per_worker: 0.5}\n"
                             "failures: {worker_restarts: 2, trial_retries: 1}\n")
    assert runs_in_process(sweep.resources)
    # no driver slot: the slots live on the head, which may have no CPU, and one bundle is one node
    assert trial_resources(sweep.resources) == {"CPU": 2.0, "GPU": 0.5}
    # its process is its only worker: Tune's retries absorb the worker restarts
    assert trial_max_failures(sweep) == 3
    cpu_only = _sweep(tmp_path, "resources: {cpus_per_worker: 1}\n")
    assert trial_resources(cpu_only.resources) == {"CPU": 1.0}


def test_several_workers_are_a_ray_train_run_under_a_driver_slot(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, "resources: {workers_per_trial: 2, cpus_per_worker: 1}\n"
                             "failures: {worker_restarts: 2, trial_retries: 1}\n")
    assert not runs_in_process(sweep.resources)
    assert trial_resources(sweep.resources) == {DRIVER_RESOURCE: 1}
    assert trial_max_failures(sweep) == 1  # Ray Train restarts the workers itself


def test_cache_build_starts_the_callers_ray_and_leaves_it_up(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from pldistill.prepare import cache_build as cache

    started: list[str] = []
    up = {"ray": False}

    def start() -> None:
        started.append("caller")
        up["ray"] = True

    def must_not_run(*_a, **_k) -> None:
        raise AssertionError("the cache build started a Ray of its own")

    monkeypatch.setattr(ray, "is_initialized", lambda: up["ray"])
    monkeypatch.setattr(ray, "init", must_not_run)
    opts = cache.CacheBuildOptions(start_ray=start)
    cache.ensure_ray(opts)
    cache.ensure_ray(opts)  # the second fold: Ray is up
    assert started == ["caller"]
    assert opts._started == []  # so stop_own_ray does not shut the caller's Ray down
