"""A failing trial never takes the sweep down: it is recorded with its reason, the others finish.

A grid of two variants, one of which diverges (lr 1e30: the loss turns non-finite in its first
epoch). The sweep must end with one completed and one failed row, the failure's reason first in
its error text, and Optuna-free grid bookkeeping intact.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest
import yaml

from pldistill.results import read_trials
from pldistill.sweep.launch import LaunchOptions, launch

pytestmark = pytest.mark.slow


def test_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, tiny_cache, monkeypatch):
    sweep = {
        "name": "failures",
        "results": str(tmp_path / "results"),
        "base": {"data": {"source": "synthetic", "dataset": "synthetic", "folds": [1]},
                 "train": {"epochs": 1, "batch_size": 8, "grad_accum": 1, "num_threads": 1},
                 "cache_dir": tiny_cache},
        "search": {"algorithm": "grid", "max_concurrent_trials": 1,
                   "variants": [{"name": "ok", "objective": "sft", "lr": 1e-3},
                                {"name": "diverges", "objective": "sft", "lr": 1e30}]},
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 1},
    }
    path = tmp_path / "failures.yaml"
    path.write_text(yaml.safe_dump(sweep))
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    try:
        summary = launch(path, LaunchOptions(num_cpus=2, dashboard=False, progress=False, ray_tmpdir=ray_tmp))
    finally:
        import ray

        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert summary.counts == {"completed": 1, "failed": 1, "total": 2}
    rows = {r["hp_lr"]: r for r in read_trials(tmp_path / "results").to_pylist()}
    assert rows[1e-3]["status"] == "completed" and rows[1e-3]["error"] is None
    failed = rows[1e30]
    assert failed["status"] == "failed"
    assert failed["error"].splitlines()[0].startswith("FloatingPointError: non-finite loss")
    assert failed["ended_at"] is not None
