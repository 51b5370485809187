"""End to end: launch a small Optuna sweep on a private local Ray, query it through the CLI, report it.

Two trials, tiny models, 2 Ray Train workers per trial (gloo, DDP). The trials table must hold two
completed rows with finite metrics, the hyperparameters Optuna chose (as Tune recorded them), and
two distinct worker ranks' node labels; the epochs table one row per epoch. The report's tables
must show, cell by cell, the trial and scores that ``query`` finds for that cell.
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
from _corpus import SMALL_CORPUS

from pldistill.cli import run_app
from pldistill.sweep.launch import LaunchOptions, launch

pytestmark = pytest.mark.slow


def _sweep_file(tmp: Path, cache: str) -> Path:
    sweep = {
        "name": "e2e",
        "results": str(tmp / "results"),
        "base": {
            "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS},
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
    if summary.counts != {"completed": 2, "pruned": 0, "failed": 0, "running": 0, "total": 2}:
        from pldistill.results import read_trials

        rows = read_trials(tmp_path / "results").to_pylist()
        pytest.fail(f"{summary.counts}: " + " | ".join(f"{r['status']}: {r['error']}" for r in rows))
    capsys.readouterr()
    # what was run travels with the summary: read back from the trials' resolved configs
    assert summary.protocol[0] == "Protocol (from the trials' resolved configs):"
    assert "- labels: every training clip labelled" in summary.protocol
    assert "- training: 2 epochs, batch 8 x accumulation 1, lr 0.001, best epoch by val_ua" in summary.protocol

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
    _check_report(tmp_path, results, rows, capsys)


def _check_report(tmp_path: Path, results: str, rows: list[dict], capsys) -> None:
    """``report`` of the same sweep: every table cell is what ``query`` says for that cell."""
    from pldistill.results.report import build_report

    out = tmp_path / "report"
    assert run_app(["report", "e2e", "--results", results, "--out", str(out)]) == 0
    capsys.readouterr()
    md = (out / "report.md").read_text()
    for png in ("metric_vs_params.png", "history.png"):  # importances: withheld below 10 trials
        assert (out / png).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    report = build_report(results, "e2e")

    def best(where: str) -> dict:
        sql = ("select trial_id, test_ua, test_wa, test_f1, teacher_test_ua, teacher_test_wa, teacher_test_f1 "
               f"from trials where status = 'completed' and dataset = 'synthetic' and {where} "
               "order by val_ua desc, trial_id limit 1")
        assert run_app(["query", sql, "--results", results, "--format", "json"]) == 0
        return json.loads(capsys.readouterr().out)[0]

    exp = best("objective = 'pl_distill'")
    pick = "PL-Distill (best of 2 by val UA)"  # a row picked among the sampled trials says so
    cell = report.table1.rows[pick]["synthetic"]
    assert cell.trial_id == exp["trial_id"] and cell.n_trials == 2
    assert {m: cell.scores[m] for m in ("test_ua", "test_wa", "test_f1")} == \
        {m: exp[m] for m in ("test_ua", "test_wa", "test_f1")}
    # one seed, one fold: each cell is the run's figure, n = 1, no interval
    assert f"| {pick} | " + " | ".join(f"{100 * exp[m]:.2f} (n=1, no CI)" for m in ("test_ua", "test_wa", "test_f1")) \
        in md
    teacher = report.table1.rows["Teacher"]["synthetic"].scores
    assert {m: teacher[m] for m in ("test_ua", "test_wa", "test_f1")} == \
        {m: exp[f"teacher_{m}"] for m in ("test_ua", "test_wa", "test_f1")}
    labels = {"uniform": "LDist + PDist (CKA)", "attention_last": "LDist + PDist (AwCKA)"}
    chosen = sorted({r["hp_weighting"] for r in rows})
    if len(chosen) == 2:  # Table 2 needs two ablation rows
        for w in chosen:
            exp = best(f"hp_weighting = '{w}'")
            cell = report.table2.rows[labels[w]]["synthetic"]
            assert cell.trial_id == exp["trial_id"] and {m: cell.scores[m] for m in ("test_ua", "test_wa")} == \
                {m: exp[m] for m in ("test_ua", "test_wa")}
    else:
        assert "## Table 2: ablation\n\nOmitted:" in md
    assert report.importances is None  # 2 trials: importances would mean nothing, and the report says why
    assert "## Hyperparameter importances (Optuna)" in md and "withheld: they would rest on 2 completed trials" in md
