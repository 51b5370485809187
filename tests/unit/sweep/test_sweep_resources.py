"""Does a sweep fit its cluster: concurrent worker groups, GPUs, driver slots, each named by key."""

from __future__ import annotations

import textwrap
from pathlib import Path

from pldistill.sweep import SweepConfig, load_sweep
from pldistill.sweep.resources import check_resources

GOOD = """\
name: t
search:
  algorithm: optuna
  num_samples: 4
  space:
    alpha: {type: uniform, low: 0.0, high: 2.0}
"""


def _sweep(tmp_path: Path, resources: str, concurrent: int) -> SweepConfig:
    text = GOOD.replace("num_samples: 4", f"num_samples: 4\n  max_concurrent_trials: {concurrent}")
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(text + f"resources: {resources}\n"))
    return load_sweep(path)


def test_check_resources(tmp_path: Path) -> None:
    two_cpus = {"CPU": 2.0, "memory": 1e10}
    assert check_resources(_sweep(tmp_path, "{workers_per_trial: 2, cpus_per_worker: 1}", 1), two_cpus) == []
    assert check_resources(_sweep(tmp_path, "{workers_per_trial: 2, cpus_per_worker: 1}", 4), {"CPU": 8}) == []
    [concurrency] = check_resources(_sweep(tmp_path, "{workers_per_trial: 2, cpus_per_worker: 1}", 3), {"CPU": 5})
    assert "search.max_concurrent_trials: 3 trials x 2 CPU (2 worker(s) x 1 CPU) = 6 CPU" in concurrency
    assert "at most 2 fit at once" in concurrency
    [single] = check_resources(_sweep(tmp_path, "{workers_per_trial: 2, cpus_per_worker: 2}", 1), two_cpus)
    assert "resources: one trial needs 4 CPU" in single
    [no_gpu] = check_resources(_sweep(tmp_path, "{gpus_per_worker: 0.5}", 1), two_cpus)
    assert "resources.gpus_per_worker: 0.5 GPU per worker asked for, but the cluster has no GPU" in no_gpu
    gpus = _sweep(tmp_path, "{gpus_per_worker: 1, cpus_per_worker: 1}", 4)
    assert check_resources(gpus, {"CPU": 16, "GPU": 4}) == []
    [short] = check_resources(gpus, {"CPU": 16, "GPU": 2})
    assert short.startswith(f"{tmp_path / 's.yaml'}: search.max_concurrent_trials: 4 trials x 1 GPU")
    assert check_resources(gpus, {"CPU": 16, "GPU": 4, "drv": 4}, driver_resource="drv") == []
    [slots] = check_resources(gpus, {"CPU": 16, "GPU": 4, "drv": 2}, driver_resource="drv")
    assert "4 trials need 4 'drv' driver slots, but the cluster has 2" in slots

