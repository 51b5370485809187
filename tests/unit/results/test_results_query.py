"""SQL over results: tables, union of sweeps, the lock-down, best and status."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from pldistill.errors import InputError
from pldistill.results import best_trials, open_results, run_query, sweep_status


def _files_under(*folders: Path) -> set[str]:
    return {os.path.join(d, f) for folder in folders for d, _, fs in os.walk(folder) for f in fs}


def test_tables_union_sweeps_with_different_hp_columns(results_root) -> None:
    con = open_results(results_root)
    cols = dict((n, t) for n, t, *_ in con.execute("DESCRIBE trials").fetchall())
    assert cols["hp_weighting"] == "VARCHAR" and cols["hp_temperature"] == "DOUBLE" and cols["hp_lora_rank"] == "BIGINT"
    assert cols["started_at"] == "TIMESTAMP WITH TIME ZONE"
    assert con.execute("SELECT count(*) FROM trials WHERE hp_temperature IS NOT NULL").fetchone() == (2,)
    assert con.execute("SELECT count(*) FROM epochs").fetchone() == (7 * 3 + 2,)
    assert con.execute("SELECT name, metric FROM sweeps ORDER BY name").fetchall() == [
        ("ablation", "val_ua"), ("tpe", None)]
    con.close()


def test_nested_fold_metrics_are_queryable(results_root) -> None:
    t = run_query(results_root, "SELECT fold_metrics[1].test_ua AS f1_ua, len(folds) AS n FROM trials "
                                "WHERE trial_id = 't1'")
    assert t.to_pylist() == [{"f1_ua": 0.70, "n": 2}]


def test_half_finished_sweep_is_queryable(results_root) -> None:
    t = run_query(results_root, "SELECT status, count(*) AS n FROM trials WHERE sweep = 'ablation' "
                                "GROUP BY status ORDER BY status")
    assert t.to_pylist() == [{"status": "completed", "n": 4}, {"status": "failed", "n": 1},
                             {"status": "pruned", "n": 1}, {"status": "running", "n": 1}]


def test_empty_results_folder_has_tables_with_the_base_columns(tmp_path) -> None:
    t = run_query(tmp_path, "SELECT count(*) AS n, max(test_ua) AS best FROM trials")
    assert t.to_pylist() == [{"n": 0, "best": None}]
    assert run_query(tmp_path, "SELECT * FROM epochs").num_rows == 0
    assert run_query(tmp_path, "SELECT * FROM sweeps").num_rows == 0


def test_missing_results_folder_is_an_input_error(tmp_path) -> None:
    with pytest.raises(InputError, match="no results folder"):
        run_query(tmp_path / "nope", "SELECT 1")


ESCAPES = [
    "COPY trials TO '{out}/stolen.csv'",
    "COPY (SELECT 42) TO '{out}/stolen.parquet' (FORMAT parquet)",
    "EXPORT DATABASE '{out}/export'",
    "ATTACH '{out}/evil.duckdb' AS evil",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_parquet('{results}/ablation/trials/t0.parquet')",
    "SELECT * FROM glob('/etc/*')",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "RESET enable_external_access",
    "SET lock_configuration = false",
    "SET temp_directory = '{out}'",
]


@pytest.mark.parametrize("sql", ESCAPES)
def test_locked_connection_cannot_touch_files(results_root, tmp_path, monkeypatch, sql: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    before = _files_under(tmp_path)
    con = open_results(results_root)
    with pytest.raises(duckdb.Error):
        con.execute(sql.format(out=out, results=results_root)).fetchall()
    con.close()
    assert _files_under(tmp_path) == before


@pytest.mark.parametrize("sql", [*ESCAPES, "SELECT 1; COPY trials TO '{out}/x.csv'", "SELECT 1; SELECT 2",
                                 "EXPLAIN ANALYZE COPY trials TO '{out}/x.csv'", "CREATE TABLE x AS SELECT 1",
                                 "", "-- nothing"])
def test_run_query_refuses_escapes_with_one_line(results_root, tmp_path, monkeypatch, sql: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    before = _files_under(tmp_path)
    with pytest.raises(InputError) as info:
        run_query(results_root, sql.format(out=out, results=results_root))
    assert info.value.field == "query" and "\n" not in str(info.value)
    assert _files_under(tmp_path) == before


def test_pivot_and_other_read_only_forms_work(results_root) -> None:
    t = run_query(results_root, "PIVOT (FROM trials WHERE sweep = 'ablation') ON status USING count(*) "
                                "GROUP BY sweep")
    assert t.to_pylist() == [{"sweep": "ablation", "completed": 4, "failed": 1, "pruned": 1, "running": 1}]
    assert run_query(results_root, "SHOW TABLES").column("name").to_pylist() == ["epochs", "sweeps", "trials"]
    assert "hp_weighting" in run_query(results_root, "DESCRIBE trials").column("column_name").to_pylist()


def test_sql_error_is_one_line_input_error(results_root) -> None:
    with pytest.raises(InputError, match=r"^query: Parser Error: syntax error"):
        run_query(results_root, "SELEC 1")
    with pytest.raises(InputError, match="Catalog Error.*trails.*Did you mean") as info:
        run_query(results_root, "SELECT * FROM trails")
    assert "\n" not in str(info.value)


def test_best_overall_skips_unfinished_and_nan(results_root) -> None:
    rows = best_trials(results_root, top=3).to_pylist()
    assert [(r["rank"], r["trial_id"], r["test_ua"]) for r in rows] == [(1, "x0", 0.8), (2, "t1", 0.7),
                                                                          (3, "t2", 0.65)]


def test_best_by_hp_column_groups(results_root) -> None:
    table = best_trials(results_root, by="weighting", sweep="ablation")
    assert table.column_names[:5] == ["rank", "hp_weighting", "sweep", "trial_id", "test_ua"]
    # every group tried is listed: attention_sharpened's only trial has NaN, so it has no best row
    assert [(r["hp_weighting"], r["rank"], r["trial_id"], r["trials"]) for r in table.to_pylist()] == [
        ("attention_last", 1, "t2", "1 completed, 1 running"),
        ("attention_sharpened", None, None, "1 completed; none with a test_ua"),
        ("uniform", 1, "t1", "2 completed, 1 pruned, 1 failed")]
    same = best_trials(results_root, by="hp_weighting", sweep="ablation")
    assert same.to_pylist() == table.to_pylist()
    top2 = best_trials(results_root, by="hp_weighting", sweep="ablation", top=2).to_pylist()
    assert [(r["hp_weighting"], r["rank"], r["trial_id"]) for r in top2] == [
        ("attention_last", 1, "t2"), ("attention_sharpened", None, None), ("uniform", 1, "t1"), ("uniform", 2, "t0")]


def test_best_min_mode_and_default_mode(results_root) -> None:
    assert best_trials(results_root, mode="min").to_pylist()[0]["trial_id"] == "t0"
    meta = best_trials(results_root, metric="loss_total").schema.metadata
    assert meta[b"pldistill.mode"] == b"min"


def test_best_unknown_names_list_what_exists(results_root) -> None:
    with pytest.raises(InputError, match=r"^by: unknown column 'colour'; hyperparameters: .*hp_weighting.*; all columns: query 'DESCRIBE trials'$"):
        best_trials(results_root, by="colour")
    with pytest.raises(InputError, match=r"^by: unknown column 'weightng'; did you mean 'weighting'\?$"):
        best_trials(results_root, by="weightng")
    with pytest.raises(InputError, match=r"metric: unknown numeric column 'val_u'; did you mean 'val_ua'"):
        best_trials(results_root, metric="val_u")
    with pytest.raises(InputError, match=r"metric: unknown numeric column 'objective'"):
        best_trials(results_root, metric="objective")
    with pytest.raises(InputError, match="unknown sweep 'nope'; known: ablation, tpe"):
        best_trials(results_root, sweep="nope")


def test_status_counts_and_best(results_root) -> None:
    rows = {r["sweep"]: r for r in sweep_status(results_root).to_pylist()}
    abl = rows["ablation"]
    assert (abl["total"], abl["completed"], abl["failed"], abl["running"], abl["pruned"]) == (7, 4, 1, 1, 1)
    assert abl["status"] == "running" and abl["metric"] == "val_ua"
    assert (abl["best"], abl["best_trial"]) == (pytest.approx(0.71), "t1")
    tpe = rows["tpe"]
    assert (tpe["total"], tpe["completed"], tpe["running"]) == (2, 1, 1)
    assert tpe["best_trial"] == "x0"  # no metric in sweep.json: val_ua, max


def test_seeds_are_queryable_per_run(tmp_path) -> None:
    """Every (seed, fold) run is a row to SQL: in the epochs table, and unnested from fold_metrics."""
    from pldistill.results import EpochRecord, ResultsStore, TrialRecord, run_query
    from pldistill.results.schema import FoldMetrics

    store = ResultsStore(tmp_path, "reps")
    runs = [(0, 1, 0.6), (0, 2, 0.7), (5, 1, 0.65)]
    store.write_trial(TrialRecord(trial_id="t1", status="completed", objective="sft", folds=[1, 2], seeds=[0, 5],
                                  fold_metrics=[FoldMetrics(seed=s, fold=f, test_ua=v) for s, f, v in runs]))
    store.write_epochs("t1", [EpochRecord(seed=s, fold=f, epoch=1, test_ua=v) for s, f, v in runs])
    by_run = run_query(tmp_path, "select seed, fold, test_ua from epochs order by seed, fold").to_pylist()
    assert [(r["seed"], r["fold"], r["test_ua"]) for r in by_run] == runs
    unnested = run_query(tmp_path, "select r.seed, avg(r.test_ua) as ua from "
                                   "(select unnest(fold_metrics) as r from trials) group by r.seed order by 1")
    assert [(r["seed"], round(r["ua"], 6)) for r in unnested.to_pylist()] == [(0, 0.65), (5, 0.65)]
    seeds = run_query(tmp_path, "select seeds from trials").column("seeds").to_pylist()
    assert seeds == [[0, 5]]


def test_a_copied_sweep_folder_counts_once_under_each_name(results_root, tmp_path) -> None:
    """Rows carry the name they were written under; the folder they are read from is the sweep, so a
    copy (``cp -r ablation ablation_old``) is counted once under each name, not twice under one."""
    import shutil

    root = tmp_path / "results"
    shutil.copytree(results_root / "ablation", root / "ablation")
    shutil.copytree(results_root / "ablation", root / "ablation_old")
    rows = {r["sweep"]: r for r in sweep_status(root).to_pylist()}
    assert set(rows) == {"ablation", "ablation_old"}
    assert rows["ablation"]["total"] == rows["ablation_old"]["total"] == 7
