"""``pldistill-sweep query|best|status`` through the CLI's error boundary."""

from __future__ import annotations

import csv
import io
import json
import os

import pytest

import pldistill.cli.results  # registers the commands
from pldistill.cli._app import run_app


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = run_app(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_query_csv_and_json(results_root, capsys) -> None:
    sql = "SELECT trial_id, test_ua, folds FROM trials WHERE status = 'completed' AND sweep = 'tpe'"
    rc, out, _ = _run(capsys, "query", sql, "--results", str(results_root), "--format", "csv")
    assert rc == 0
    assert list(csv.reader(io.StringIO(out))) == [["trial_id", "test_ua", "folds"], ["x0", "0.8", "[1, 2]"]]
    rc, out, _ = _run(capsys, "query", sql, "--results", str(results_root), "--format", "json")
    assert rc == 0 and json.loads(out) == [{"trial_id": "x0", "test_ua": 0.8, "folds": [1, 2]}]


def test_query_json_turns_nan_into_null(results_root, capsys) -> None:
    rc, out, _ = _run(capsys, "query", "SELECT test_ua, started_at FROM trials WHERE trial_id = 't6'",
                      "--results", str(results_root), "--format", "json")
    assert rc == 0 and json.loads(out) == [{"test_ua": None, "started_at": "2025-01-02T03:04:05+00:00"}]


def test_query_table_is_the_default(results_root, capsys) -> None:
    rc, out, _ = _run(capsys, "query", "SELECT trial_id, test_ua FROM trials WHERE trial_id = 't1'",
                      "--results", str(results_root))
    assert rc == 0 and "t1" in out and "0.7000" in out


def test_results_folder_from_environment(results_root, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PLDISTILL_RESULTS", str(results_root))
    rc, out, _ = _run(capsys, "query", "SELECT count(*) AS n FROM trials", "--format", "json")
    assert rc == 0 and json.loads(out) == [{"n": 9}]


@pytest.mark.parametrize("sql", ["SELEC trial_id FROM trials", "SELECT nope FROM trials",
                                 "SELECT * FROM read_csv('/etc/passwd')", "SELECT 1; SELECT 2"])
def test_sql_error_is_one_line_exit_2(results_root, capsys, sql: str) -> None:
    rc, out, err = _run(capsys, "query", sql, "--results", str(results_root))
    assert rc == 2 and out == ""
    assert err.startswith("error: query: ") and err.count("\n") == 1 and "Traceback" not in err


def test_query_cannot_write_a_file(results_root, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    for sql in (f"COPY trials TO '{tmp_path}/out.csv'", "COPY (SELECT 1) TO 'out.parquet'",
                f"EXPORT DATABASE '{tmp_path}/dump'"):
        rc, _, err = _run(capsys, "query", sql, "--results", str(results_root), "--format", "csv")
        assert rc == 2 and err.startswith("error: query: ")
    assert set(os.listdir(tmp_path)) == before


def test_missing_results_folder(tmp_path, capsys) -> None:
    rc, _, err = _run(capsys, "status", "--results", str(tmp_path / "nothing-here"))
    assert rc == 2 and "no results folder" in err and err.count("\n") == 1


def test_best_by_groups(results_root, capsys) -> None:
    for by in ("weighting", "hp_weighting"):
        rc, out, _ = _run(capsys, "best", "--by", by, "--sweep", "ablation", "--results", str(results_root),
                          "--format", "json")
        assert rc == 0
        assert [(r["hp_weighting"], r["trial_id"]) for r in json.loads(out)] == [
            ("attention_last", "t2"), ("attention_sharpened", None), ("uniform", "t1")]
    rc, out, _ = _run(capsys, "best", "--by", "weighting", "--results", str(results_root))
    assert rc == 0 and "per hp_weighting" in out and "attention_last" in out and "t2" in out
    # every group tried is a line, and how its trials ended: attention_sharpened has no best (NaN)
    assert "1 completed; none with a val_ua" in out and "2 completed, 1 pruned, 1 failed" in out


def test_best_overall_top_and_mode(results_root, capsys) -> None:
    rc, out, _ = _run(capsys, "best", "--top", "2", "--results", str(results_root), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rc == 0 and [(r["rank"], r["trial_id"]) for r in rows] == [("1", "x0"), ("2", "t1")]
    rc, out, _ = _run(capsys, "best", "--mode", "min", "--metric", "val_ua", "--results", str(results_root),
                      "--format", "json")
    assert rc == 0 and json.loads(out)[0]["trial_id"] == "t0"


def test_best_unknown_column_lists_available(results_root, capsys) -> None:
    rc, out, err = _run(capsys, "best", "--by", "colour", "--results", str(results_root))
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert "unknown column 'colour'" in err and "hp_weighting" in err and "hp_temperature" in err
    rc, out, err = _run(capsys, "best", "--by", "weightng", "--results", str(results_root))
    assert rc == 2 and err == "error: by: unknown column 'weightng'; did you mean 'weighting'?\n"


def test_status_counts(results_root, capsys) -> None:
    rc, out, _ = _run(capsys, "status", "--results", str(results_root), "--format", "json")
    assert rc == 0
    rows = {r["sweep"]: r for r in json.loads(out)}
    assert {k: rows["ablation"][k] for k in ("total", "completed", "failed", "running", "pruned", "best_trial")} == {
        "total": 7, "completed": 4, "failed": 1, "running": 1, "pruned": 1, "best_trial": "t1"}
    assert rows["tpe"]["total"] == 2
    rc, out, _ = _run(capsys, "status", "--results", str(results_root))
    assert rc == 0 and "ablation" in out and "tpe" in out and "completed" in out


def test_print_best_for_other_commands(results_root) -> None:
    from rich.console import Console

    console = Console(record=True, width=200)
    pldistill.cli.results.print_best(results_root, sweep="ablation", top=2, console=console)
    text = console.export_text()
    assert "best by val_ua (max)" in text and "t1" in text and "t2" in text and "x0" not in text
    # the metric's CI over each trial's (seed, fold) runs stands next to it
    console = Console(record=True, width=250)
    pldistill.cli.results.print_best(results_root, sweep="ablation", metric="test_ua", top=2, console=console)
    text = console.export_text()
    # the fixture's fold 2 records no test_ua: no estimate rather than fold 1's alone, with the reason
    assert "test_ua 95% CI" in text and "– (no estimate: fold 2 has no finite run)" in text


def test_run_intervals_column_is_the_t_interval_over_runs() -> None:
    import pyarrow as pa

    from pldistill.cli.results import with_run_intervals

    runs = [[{"fold": 1, "val_ua": 0.5}, {"fold": 2, "val_ua": 0.6}, {"fold": 3, "val_ua": 0.55}]]
    table = with_run_intervals(pa.table({"trial_id": ["t"], "fold_metrics": runs}), "val_ua")
    # mean 0.55, sd 0.05, t(0.975, 2) = 4.302653: half width 0.124
    assert table.column("val_ua 95% CI").to_pylist() == ["0.550 ± 0.124 (n=3, P)"]
    # one run per fold: the plain interval over folds, and the legend says what P means
    assert table.schema.metadata[b"pldistill.intervals"].decode().startswith("P: plain t over the runs")


def test_print_best_says_which_interval_its_ci_column_carries(tmp_path, trial) -> None:
    from rich.console import Console

    from pldistill.results import FoldMetrics, ResultsStore

    store = ResultsStore(tmp_path, "seeds")
    store.write_sweep_meta({"metric": "val_ua", "mode": "max"})
    runs = [FoldMetrics(seed=s, fold=f, val_ua=0.5 + 0.1 * f + 0.01 * s) for f in (1, 2) for s in (0, 1)]
    store.write_trial(trial("t0", fold_metrics=runs, seeds=[0, 1]))
    console = Console(record=True, width=250)
    pldistill.cli.results.print_best(tmp_path, sweep="seeds", console=console)
    text = console.export_text()
    # folds (0.6, 0.61) and (0.7, 0.71): mean 0.655; s^2 0.00005 each -> var (0.00005/2 + 0.00005/2)/4
    # = 0.0000125, Satterthwaite df 2 -> half width 4.302653 * 0.0035355 = 0.0152
    assert "0.655 ± 0.015 (n=4, S)" in text
    assert "S: stratified t: the folds are fixed strata, the seeds the replicates inside them" in text


def test_best_prints_the_protocol_of_the_trials_it_shows(tmp_path, trial, capsys) -> None:
    """Read from the shown trials' resolved configs; not in csv/json, which scripts parse."""
    from pldistill.config import TrialConfig
    from pldistill.results import ResultsStore

    store = ResultsStore(tmp_path, "semi")
    cfg = TrialConfig.model_validate({"data": {"labelled_fraction": 0.25}})
    store.write_trial(trial("a", config_json=cfg.to_json()))
    rc, out, _ = _run(capsys, "best", "--results", str(tmp_path))
    assert rc == 0 and "sweep semi, the trials above. Protocol (from the trials' resolved configs):" in out
    assert "- labels: 25% of each fold's training clips labelled" in out
    assert "- labelled fraction: paper 1 (every training clip labelled); here 0.25" in out
    rc, out, _ = _run(capsys, "best", "--results", str(tmp_path), "--format", "json")
    assert rc == 0 and json.loads(out)[0]["trial_id"] == "a"


def test_tables_render_whole_off_a_terminal(results_root, tmp_path, capsys, monkeypatch, trial) -> None:
    """Off a terminal (a log, a pipe, Ray Job output) a table is not squeezed to the window: with
    COLUMNS=40 every cell of ``best``, ``status`` and ``jobs`` stays on one line, whole."""
    from datetime import datetime, timezone

    import pldistill.cli.jobs  # noqa: F401  (registers the commands)
    import pldistill.sweep.jobs as jobs
    from pldistill.results import ResultsStore

    monkeypatch.setenv("COLUMNS", "40")
    long_id = "3f2a1b9c_00004"
    store = ResultsStore(tmp_path, "a_rather_long_sweep_name")
    store.write_trial(trial(long_id, test_ua=0.61, hparams={"weighting": "attention_sharpened"}))
    rc, out, _ = _run(capsys, "best", "--by", "weighting", "--results", str(tmp_path))
    row = next(line for line in out.splitlines() if long_id in line)
    assert rc == 0 and "attention_sharpened" in row and "a_rather_long_sweep_name" in row and "0.6200" in row
    assert "val_ua 95% CI" in out  # headers whole too
    rc, out, _ = _run(capsys, "status", "--results", str(tmp_path))
    row = next(line for line in out.splitlines() if "a_rather_long_sweep_name" in line)
    assert rc == 0 and long_id in row
    job_id = "raysubmit_pldistill_smoke_3f2a1b9c4d5e6f70"  # `logs` and `stop` need all of it
    rows = [jobs.JobRow(job_id, "RUNNING", "smoke", datetime(2026, 1, 2, tzinfo=timezone.utc), 61.0)]
    monkeypatch.setattr(jobs, "connect", lambda address: (None, "http://head:8265"))
    monkeypatch.setattr(jobs, "list_jobs", lambda client, url: rows)
    rc, out, _ = _run(capsys, "jobs")
    row = next(line for line in out.splitlines() if job_id in line)
    assert rc == 0 and "RUNNING" in row and "1m01s" in row
