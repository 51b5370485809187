"""A worker killed mid-trial: Ray Train restarts it, and it resumes from the trial's last checkpoint.

One trial of 4 epochs on 2 workers (a trial of one worker runs in the Tune trial's own process, with
no Ray Train worker to kill: ``test_node_loss`` kills that one). Once the trial has a checkpoint on
storage, one of its Ray Train worker processes is SIGKILLed from outside, as an OOM killer or a lost
spot instance would. The worker group restarts from the last checkpoint. The trial must
still complete, with one restart recorded, every epoch row once, and the epochs after the restart
marked as the second attempt, starting right after the checkpoint that existed at the kill (or the
one being written at that moment) -- not from epoch 1.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest
from _procs import ray_processes, registered_checkpoint_epochs, start_cli, stop, tiny_sweep, wait_for

from pldistill.results import read_epochs, read_trials

pytestmark = pytest.mark.slow

EPOCHS = 4


def test_killed_worker_resumes_from_the_last_checkpoint(tmp_path, tiny_cache):
    from pldistill.sweep import load_sweep
    from pldistill.sweep.launch import prepare_sweep

    path = tiny_sweep("workerkill", tmp_path, tiny_cache, epochs=EPOCHS, max_steps_per_epoch=4,
                      search={"algorithm": "grid", "max_concurrent_trials": 1,
                              "variants": [{"name": "only", "objective": "pl_distill"}]},
                      failures={"worker_restarts": 2}, workers=2)
    prepare_sweep(load_sweep(path), log=lambda m: None)
    results = tmp_path / "results"
    log = tmp_path / "cli.log"
    ray_tmp = tempfile.mkdtemp(prefix="rw", dir="/tmp")
    proc = start_cli(["launch", str(path), "--num-cpus", "2", "--no-dashboard", "--quiet"], ray_tmp, log)
    try:
        wait_for("the trial's first checkpoint", lambda: bool(registered_checkpoint_epochs(results / "workerkill" / "ray-train")), 600, proc, log)
        workers = [p for p in ray_processes(ray_tmp) if "RayTrainWorker" in " ".join(p.cmdline())]
        assert len(workers) == 2, [" ".join(p.cmdline()) for p in ray_processes(ray_tmp)]
        persisted = registered_checkpoint_epochs(results / "workerkill" / "ray-train")[-1]
        workers[1].kill()
        assert proc.wait(timeout=900) == 0, log.read_text()[-4000:]
    finally:
        stop(proc, ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)

    (row,) = read_trials(results).to_pylist()
    assert row["status"] == "completed", row["error"]
    assert row["restarts"] == 1
    epochs = sorted(read_epochs(results).to_pylist(), key=lambda r: r["epoch"])
    assert [e["epoch"] for e in epochs] == list(range(1, EPOCHS + 1))
    attempts = [e["attempt"] for e in epochs]
    resumed_after = attempts.index(1)  # epochs done before the restart (the checkpoint it resumed from)
    assert attempts == [0] * resumed_after + [1] * (EPOCHS - resumed_after), attempts
    assert resumed_after in (persisted, persisted + 1), (persisted, attempts)
    assert resumed_after >= 1, "the restarted worker started over instead of resuming"
