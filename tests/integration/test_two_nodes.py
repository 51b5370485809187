"""A sweep on a simulated 2-node Ray cluster: the trial's 2 FSDP workers run on different nodes.

``ray.cluster_utils.Cluster`` starts two raylets on this machine (1 CPU each; the head also holds the
``pldistill_driver`` slot). The sweep asks for ``workers_per_trial: 2``, ``placement_strategy:
STRICT_SPREAD`` and ``parallelism: fsdp``, so the only placement is one worker per node, and the
teacher and student LLMs are sharded across the two nodes (gloo). The trials table's ``nodes``
column (one label per rank, ``host:node_id``) must name both nodes.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from _corpus import SMALL_CORPUS

from pldistill.sweep.launch import LaunchOptions, launch

pytestmark = pytest.mark.slow


def _sweep_file(tmp: Path, parallelism: str) -> Path:
    sweep = {
        "name": "two_nodes",
        "results": str(tmp / "results"),
        "base": {
            "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS},
            "model": {"teacher": "tiny", "student_llm": "tiny", "teacher_mode": "online",
                      "teacher_finetune": {"enabled": False}},
            "train": {"epochs": 1, "batch_size": 4, "grad_accum": 1, "max_steps_per_epoch": 2, "num_threads": 1,
                      "eval_batch_size": 8},
            "cache_dir": str(tmp / "cache"),
        },
        "fixed": {"objective": "pl_distill"},
        "search": {"algorithm": "optuna", "num_samples": 1, "max_concurrent_trials": 1, "seed": 0,
                   "space": {"alpha": {"type": "uniform", "low": 0.5, "high": 1.5}}},
        "resources": {"workers_per_trial": 2, "cpus_per_worker": 1, "placement_strategy": "STRICT_SPREAD",
                      "parallelism": parallelism},
    }
    path = tmp / "two_nodes.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_fsdp_trial_spreads_its_workers_over_two_nodes(tmp_path, monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    from pldistill.results import read_trials
    from pldistill.sweep.driver import DRIVER_RESOURCE

    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)  # Cluster's nodes put their sessions (and sockets) here
    (Path(ray_tmp) / "ray").mkdir()
    cluster = Cluster(initialize_head=True, shutdown_at_exit=False,
                      head_node_args={"num_cpus": 1, "resources": {DRIVER_RESOURCE: 1}, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        node_ids = {n.node_id for n in cluster.list_all_nodes()}
        summary = launch(_sweep_file(tmp_path, "fsdp"),
                         LaunchOptions(address=cluster.address, dashboard=False, progress=False))
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    rows = read_trials(tmp_path / "results").to_pylist()
    assert summary.counts == {"completed": 1, "pruned": 0, "failed": 0, "running": 0, "total": 1}, [r.get("error") for r in rows]
    [row] = rows
    assert row["status"] == "completed" and row["num_workers"] == 2
    assert math.isfinite(row["val_ua"]) and math.isfinite(row["loss_total"])
    assert len(node_ids) == 2
    nodes = row["nodes"]  # rank order; each "host:<node id, 12 hex>"
    assert len(nodes) == 2 and len(set(nodes)) == 2, nodes
    assert {n.rsplit(":", 1)[1] for n in nodes} == {i[:12] for i in node_ids}
    best = tmp_path / "results" / "two_nodes" / "runs" / row["trial_id"] / "seed_0" / "fold_1" / "best"
    assert (best / "adapter_model.safetensors").is_file()
