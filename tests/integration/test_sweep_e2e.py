"""End to end: launch a small Optuna sweep on a private local Ray, then query it through the CLI.

Two trials, tiny models, 2 Ray Train workers per trial (gloo, DDP). The trials table must hold two
completed rows with finite metrics, the hyperparameters Optuna chose (as Tune recorded them), and
two distinct worker ranks' node labels; the epochs table one row per epoch.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from pldistill.cli import run_app
from pldistill.sweep.launch import LaunchOptions, launch

pytestmark = pytest.mark.slow


def _sweep_file(tmp: Path, cache: str) -> Path:
    sweep = {
        "name": "e2e",
        "results": str(tmp / "results"),
        "base": {
            "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1]},
            "model": {"teacher": "tiny", "student_llm": "tiny"},
            "train": {"epochs": 2, "batch_size": 8, "grad_accum": 1, "num_threads": 1},
            "cache_dir": cache,
        },
        "fixed": {"objective": "pl_distill"},
        "search": {"algorithm": "optuna", "num_samples": 2, "max_concurrent_trials": 1, "seed": 3,
                   "space": {"alpha": {"type": "uniform", "low": 0.0, "high": 2.0},
                             "lora_rank": {"type": "int", "low": 2, "high": 8},
                             "weighting": {"type": "choice", "values": ["uniform", "attention_last"]}}},
        "resources": {"workers_per_trial": 2, "cpus_per_worker": 1},
    }
    path = tmp / "e2e.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_launch_then_query(tmp_path, tiny_cache, capsys, monkeypatch):
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    try:
        summary = launch(_sweep_file(tmp_path, tiny_cache),
                         LaunchOptions(num_cpus=2, dashboard=False, progress=False, ray_tmpdir=ray_tmp))
    finally:
        import ray

        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    if summary.counts != {"completed": 2, "failed": 0, "total": 2}:
        from pldistill.results import read_trials

        rows = read_trials(tmp_path / "results").to_pylist()
        pytest.fail(f"{summary.counts}: " + " | ".join(f"{r['status']}: {r['error']}" for r in rows))
    capsys.readouterr()

    results = str(tmp_path / "results")
    sql = ("select trial_id, status, hp_alpha, hp_lora_rank, hp_weighting, val_ua, test_ua, test_f1, "
           "loss_total, loss_cka, teacher_test_ua, num_workers, nodes, best_epoch from trials order by trial_id")
    assert run_app(["query", sql, "--results", results, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2
    # What Optuna chose, as Tune recorded it in each trial's params.json
    chosen = {}
    for params in (tmp_path / "results" / "e2e" / "ray-tune").rglob("params.json"):
        trial_id = re.search(r"_([0-9a-f]{8})_", params.parent.name).group(1)
        chosen[trial_id] = json.loads(params.read_text())
    assert len(chosen) == 2
    for row in rows:
        assert row["status"] == "completed"
        for m in ("val_ua", "test_ua", "test_f1", "loss_total", "loss_cka", "teacher_test_ua"):
            assert row[m] is not None and math.isfinite(row[m])
        picked = chosen[row["trial_id"]]
        assert row["hp_alpha"] == pytest.approx(picked["alpha"])
        assert row["hp_lora_rank"] == picked["lora_rank"]
        assert row["hp_weighting"] == picked["weighting"]
        assert 0.0 <= row["hp_alpha"] <= 2.0 and 2 <= row["hp_lora_rank"] <= 8
        assert row["num_workers"] == 2 and len(row["nodes"]) == 2
        assert row["best_epoch"] in (1, 2)
    assert rows[0]["hp_alpha"] != rows[1]["hp_alpha"]

    assert run_app(["query", "select trial_id, count(*) n from epochs group by trial_id", "--results", results,
                    "--format", "json"]) == 0
    epochs = json.loads(capsys.readouterr().out)
    assert sorted(e["n"] for e in epochs) == [2, 2]
    assert not any(p for p in os.listdir("/tmp") if p == os.path.basename(ray_tmp))
