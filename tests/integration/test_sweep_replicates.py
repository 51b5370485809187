"""A sweep that replicates until decided, through Ray Tune end to end: the trial adds a seed past
``min_seeds``, Tune (and so the searcher) sees the mean over every run, and the recorder's row says
how many seeds the trial used and why it stopped, where ``query`` finds them."""

from __future__ import annotations

import json
import shutil
import tempfile

import pytest
import yaml
from _procs import tiny_sweep

from pldistill.cli import run_app
from pldistill.sweep.launch import LaunchOptions, launch

pytestmark = pytest.mark.slow


def test_a_replicated_sweep_records_its_seeds(tmp_path, tiny_cache, capsys, monkeypatch):
    # half_width 1e-9 of val_loss (a continuous figure, never that tight): 2 seeds, one added, the cap
    path = tiny_sweep("adaptive", tmp_path, tiny_cache, epochs=1, max_steps_per_epoch=2, fixed={"objective": "sft"},
                      search={"algorithm": "grid", "metric": "val_loss", "variants": [{"name": "sft"}],
                              "replicates": {"min_seeds": 2, "max_seeds": 3, "half_width": 1e-9}})
    sweep = yaml.safe_load(path.read_text())
    sweep["base"]["train"]["select_metric"] = "val_loss"
    sweep["base"]["model"] = {"teacher_finetune": {"enabled": False}}  # sft reads no teacher
    path.write_text(yaml.safe_dump(sweep))
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    try:
        summary = launch(path, LaunchOptions(num_cpus=1, dashboard=False, progress=False, ray_tmpdir=ray_tmp))
    finally:
        import ray

        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert summary.counts == {"completed": 1, "pruned": 0, "failed": 0, "running": 0, "total": 1}
    capsys.readouterr()

    results = str(tmp_path / "results")
    sql = "select seeds, seeds_used, seeds_stop, seeds_half_width, val_loss, fold_metrics from trials"
    assert run_app(["query", sql, "--results", results, "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["seeds"], row["seeds_used"], row["seeds_stop"]) == ([0, 1, 2], 3, "cap")
    assert row["seeds_half_width"] > 1e-9
    runs = [f["val_loss"] for f in row["fold_metrics"]]
    assert len(runs) == 3 and row["val_loss"] == pytest.approx(sum(runs) / 3)
    # what Tune (and the searcher) saw last is that mean over all three runs
    (result_json,) = (tmp_path / "results" / "adaptive" / "ray-tune").rglob("result.json")
    last = json.loads(result_json.read_text().strip().splitlines()[-1])
    assert last["val_loss"] == pytest.approx(row["val_loss"])
    assert run_app(["query", "select seed from epochs order by seed", "--results", results, "--format", "json"]) == 0
    assert [e["seed"] for e in json.loads(capsys.readouterr().out)] == [0, 1, 2]
