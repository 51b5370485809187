"""Losing a node mid-trial: the trial is rescheduled on another node and the sweep completes.

A simulated cluster (``ray.cluster_utils.Cluster``, as Ray's own ``tune/tests/test_cluster.py``
does): a head with no CPU, and two 1-CPU worker nodes. The sweep (one trial, 4 epochs, one worker)
attaches to it with ``--address``. Its trial trains in the Tune trial's own process, which lands on
a worker node. Once the trial has a checkpoint, that node is removed: the process dies with it, and
Tune restarts the trial on the surviving node from its last checkpoint (``failures.worker_restarts``
count as Tune's retries for such trials). The trial must complete there, with the restart and the
new node recorded.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from _procs import start_cli, stop, tiny_sweep, tune_checkpoint_epochs, wait_for

from pldistill.results import read_epochs, read_trials

pytestmark = pytest.mark.slow


def test_trial_survives_the_loss_of_its_node(tmp_path, tiny_cache, monkeypatch):
    from ray.cluster_utils import Cluster

    from pldistill.sweep import load_sweep
    from pldistill.sweep.driver import DRIVER_RESOURCE
    from pldistill.sweep.launch import prepare_sweep

    path = tiny_sweep("nodeloss", tmp_path, tiny_cache, epochs=4, max_steps_per_epoch=4,
                      search={"algorithm": "grid", "max_concurrent_trials": 1,
                              "variants": [{"name": "only", "objective": "pl_distill"}]},
                      failures={"worker_restarts": 2})
    prepare_sweep(load_sweep(path), log=lambda m: None)
    results = tmp_path / "results"
    ray_tmp = tempfile.mkdtemp(prefix="rn", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    (Path(ray_tmp) / "ray").mkdir()  # the nodes' sessions (and sockets) go under RAY_TMPDIR
    cluster = Cluster(initialize_head=True, shutdown_at_exit=False, head_node_args={
        "num_cpus": 0, "resources": {DRIVER_RESOURCE: 2}, "include_dashboard": False})
    workers = {cluster.add_node(num_cpus=1) for _ in range(2)}
    cluster.wait_for_nodes()
    log = tmp_path / "cli.log"
    proc = start_cli(["launch", str(path), "--address", cluster.address, "--quiet"], ray_tmp, log)
    try:
        experiment = results / "nodeloss" / "ray-tune" / "nodeloss"
        wait_for("a checkpoint and the trial's node", lambda: tune_checkpoint_epochs(experiment) and _nodes(results),
                 600, proc, log)
        (first_node,) = _nodes(results)
        victim = next(n for n in workers if first_node.endswith(n.node_id[:12]))
        cluster.remove_node(victim)
        assert proc.wait(timeout=900) == 0, log.read_text()[-4000:]
    finally:
        stop(proc, ray_tmp)
        cluster.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)

    (row,) = read_trials(results).to_pylist()
    assert row["status"] == "completed", row["error"]
    (survivor,) = workers - {victim}
    assert row["nodes"] == [n for n in row["nodes"] if n.endswith(survivor.node_id[:12])] and row["nodes"]
    assert row["restarts"] == 1
    epochs = read_epochs(results).to_pylist()
    assert sorted(e["epoch"] for e in epochs) == [1, 2, 3, 4]
    assert not (results / "nodeloss" / "ray-train").exists()  # no Ray Train run: the trial ran in process


def _nodes(results) -> list[str]:
    try:
        rows = read_trials(results).to_pylist()
    except Exception:  # nothing written yet
        return []
    return list(rows[0]["nodes"] or []) if rows else []
