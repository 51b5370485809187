"""The store: atomic, idempotent writes; user-only folders; readers that union sweeps and skip temp files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pldistill.errors import DiskFullError, InputError
from pldistill.results import ResultsStore, git_commit, read_epochs, read_trials, store


def _visible(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_layout_and_user_only_folders(tmp_path, trial, epochs) -> None:
    root = tmp_path / "new" / "results"
    s = ResultsStore(root, "sw")
    s.write_sweep_meta({"sweep_file": "sweeps/x.yaml"})
    s.write_trial(trial("t1"))
    s.write_epochs("t1", epochs())
    assert (root / "sw" / "sweep.json").is_file()
    assert _visible(root / "sw" / "trials") == ["t1.parquet"]
    assert _visible(root / "sw" / "epochs") == ["t1.parquet"]
    for folder in (tmp_path / "new", root, root / "sw", root / "sw" / "trials", root / "sw" / "epochs"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_writing_a_trial_twice_replaces_it(tmp_path, trial, epochs) -> None:
    s = ResultsStore(tmp_path, "sw")
    s.write_trial(trial("t1", status="running"))
    s.write_trial(trial("t1", test_ua=0.75))
    rows = read_trials(tmp_path).to_pylist()
    assert [(r["trial_id"], r["status"], r["test_ua"]) for r in rows] == [("t1", "completed", 0.75)]
    s.write_epochs("t1", epochs(3))
    s.write_epochs("t1", epochs(2))
    assert read_epochs(tmp_path).num_rows == 2
    assert _visible(tmp_path / "sw" / "trials") == ["t1.parquet"]


def test_crash_at_rename_leaves_old_file_and_no_temp(tmp_path, trial, monkeypatch) -> None:
    s = ResultsStore(tmp_path, "sw")
    s.write_trial(trial("t1", test_ua=0.5))

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(DiskFullError, match="t1.parquet: no space left on device"):  # the sweep stops for it
        s.write_trial(trial("t1", test_ua=0.9))
    monkeypatch.undo()
    assert _visible(tmp_path / "sw" / "trials") == ["t1.parquet"]
    assert read_trials(tmp_path).column("test_ua").to_pylist() == [0.5]


def test_crash_mid_write_leaves_old_file_and_no_temp(tmp_path, trial, monkeypatch) -> None:
    s = ResultsStore(tmp_path, "sw")
    s.write_trial(trial("t1", test_ua=0.5))

    def half_then_die(table: pa.Table, fh: object) -> None:
        fh.write(b"PAR1 half a file")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr(store.pq, "write_table", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        s.write_trial(trial("t1", test_ua=0.9))
    monkeypatch.undo()
    assert _visible(tmp_path / "sw" / "trials") == ["t1.parquet"]
    assert pq.read_table(tmp_path / "sw" / "trials" / "t1.parquet").column("test_ua").to_pylist() == [0.5]


def test_readers_ignore_temp_files_of_a_killed_writer(tmp_path, trial) -> None:
    s = ResultsStore(tmp_path, "sw")
    s.write_trial(trial("t1"))
    (tmp_path / "sw" / "trials" / ".t2.parquet.tmp-abc123").write_bytes(b"PAR1 truncated")
    (tmp_path / "sw" / "epochs" / ".t2.parquet.tmp-abc123").write_bytes(b"PAR1 truncated")
    assert read_trials(tmp_path).column("trial_id").to_pylist() == ["t1"]
    assert read_epochs(tmp_path).num_rows == 0


def test_different_sweeps_union_by_column_name(results_root) -> None:
    table = read_trials(results_root)
    assert table.num_rows == 9
    assert table.schema.field("hp_weighting").type == pa.string()
    assert table.schema.field("hp_temperature").type == pa.float64()
    by_id = {r["trial_id"]: r for r in table.to_pylist()}
    assert by_id["x0"]["hp_weighting"] is None and by_id["x0"]["hp_temperature"] == 3.0
    assert by_id["t0"]["hp_tag"] is None and by_id["t0"]["hp_weighting"] == "uniform"
    assert read_trials(results_root, sweep="tpe").num_rows == 2
    assert read_epochs(results_root, sweep="ablation", trial_id="t1").num_rows == 3


def test_empty_root_reads_as_empty_tables(tmp_path) -> None:
    assert read_trials(tmp_path / "missing").num_rows == 0
    assert "test_ua" in read_trials(tmp_path).column_names
    assert "train_loss_total" in read_epochs(tmp_path).column_names


def test_sweep_meta_defaults_and_rewrite(tmp_path) -> None:
    s = ResultsStore(tmp_path, "sw")
    s.write_sweep_meta({"sweep_file": "sweeps/smoke.yaml", "config": {"a": [1, 2]}, "metric": "val_ua", "mode": "max"})
    first = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert first["name"] == "sw" and first["status"] == "running" and first["pldistill_version"]
    assert first["config"] == {"a": [1, 2]} and first["started_at"].endswith("+00:00")
    s.write_sweep_meta({**first, "status": "finished", "ended_at": "2025-01-01T00:00:00+00:00",
                        "counts": {"completed": 3}})
    second = s.read_sweep_meta()
    assert second is not None
    assert second["status"] == "finished" and second["started_at"] == first["started_at"]
    assert second["counts"] == {"completed": 3}
    assert [p for p in os.listdir(tmp_path / "sw") if p.startswith(".")] == []


def test_rows_for_another_sweep_or_trial_are_refused(tmp_path, trial, epochs) -> None:
    s = ResultsStore(tmp_path, "sw")
    with pytest.raises(InputError, match="sweep"):
        s.write_trial(trial("t1", sweep="other"))
    with pytest.raises(InputError, match="trial_id"):
        s.write_epochs("t1", [{**epochs(1)[0].to_row(), "trial_id": "t2"}])


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden"])
def test_unsafe_names_are_refused(tmp_path, trial, name: str) -> None:
    with pytest.raises(InputError):
        ResultsStore(tmp_path, name)
    with pytest.raises(InputError, match="trial_id"):
        ResultsStore(tmp_path, "sw").write_trial(trial(name))


def test_results_under_a_regular_file_is_an_input_error(tmp_path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(InputError) as info:
        ResultsStore(blocker / "results", "sw").check_writable()
    assert "not-a-folder" in str(info.value) and "not writable" in str(info.value)


def test_read_only_results_folder_is_an_input_error(tmp_path) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    try:
        if os.access(root, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(InputError, match="ro.*not writable"):
            ResultsStore(root, "sw").check_writable()
    finally:
        root.chmod(0o700)


def test_git_commit_never_fails(monkeypatch) -> None:
    commit = git_commit()
    assert commit is None or (len(commit) == 40 and int(commit, 16) >= 0)

    def no_git(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("git")

    git_commit.cache_clear()
    monkeypatch.setattr(subprocess, "run", no_git)
    try:
        assert git_commit() is None
    finally:
        git_commit.cache_clear()


def test_one_hp_name_with_different_types_reads_as_strings(tmp_path) -> None:
    from pldistill.results import run_query

    ResultsStore(tmp_path, "a").write_trial({"trial_id": "t", "status": "completed", "hp_seed_name": 1})
    ResultsStore(tmp_path, "b").write_trial({"trial_id": "t", "status": "completed", "hp_seed_name": "x"})
    assert read_trials(tmp_path).column("hp_seed_name").to_pylist() == ["1", "x"]
    assert run_query(tmp_path, "SELECT hp_seed_name FROM trials ORDER BY sweep").column(0).to_pylist() == ["1", "x"]
