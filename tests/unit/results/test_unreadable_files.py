"""A damaged results file (truncated, empty, another schema) costs its own row, not the sweep:
``status``, ``query``, ``best``, ``report`` and the Python readers skip it with one warning line
naming it and answer from the other files."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from _damage import DAMAGES, damage

import pldistill.cli.report  # noqa: F401 (registers the command)
import pldistill.cli.results  # noqa: F401 (registers the commands)
from pldistill.cli._app import run_app
from pldistill.results import ResultsStore, read_epochs, read_trials, unreadable_files


@pytest.fixture
def damaged_root(tmp_path, trial, epochs, request) -> tuple[Path, Path, Path]:
    """A sweep of three completed trials whose ``t1`` trials and epochs files are damaged."""
    root = tmp_path / "results"
    store = ResultsStore(root, "sw")
    store.write_sweep_meta({"config": {}, "metric": "val_ua", "mode": "max"})
    for i, ua in enumerate((0.6, 0.7, 0.65)):
        store.write_trial(trial(f"t{i}", test_ua=ua))
        store.write_epochs(f"t{i}", epochs())
    damage(store.trial_path("t1"), request.param)
    damage(store.epochs_path("t1"), request.param)
    return root, store.trial_path("t1"), store.epochs_path("t1")


def _skipped(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "skipping" in r.getMessage()]


@pytest.mark.parametrize("damaged_root", DAMAGES, indirect=True)
def test_readers_skip_a_damaged_file_with_one_warning(damaged_root, caplog, capsys) -> None:
    root, bad_trial, bad_epochs = damaged_root
    assert sorted(read_trials(root).column("trial_id").to_pylist()) == ["t0", "t2"]
    assert sorted(set(read_epochs(root).column("trial_id").to_pylist())) == ["t0", "t2"]
    assert [m.split(": ")[1] for m in _skipped(caplog)] == [f"skipping {bad_trial}", f"skipping {bad_epochs}"]
    assert [p for p, _ in unreadable_files(root, "sw")] == [bad_trial, bad_epochs]

    caplog.clear()
    assert run_app(["best", "--results", str(root), "--metric", "test_ua"]) == 0
    out = capsys.readouterr().out
    assert "t2" in out and "t1" not in out.replace("t1 ", "")  # t2 is the best left
    assert any(str(bad_trial) in m for m in _skipped(caplog))
    assert run_app(["query", "SELECT count(*) AS n FROM epochs", "--results", str(root), "--format", "csv"]) == 0
    assert capsys.readouterr().out.split() == ["n", "6"]
    assert run_app(["report", "sw", "--results", str(root), "--out", str(root.parent / "report")]) == 0
    assert (root.parent / "report").is_dir()


@pytest.mark.parametrize("damaged_root", ["truncated"], indirect=True)
def test_status_says_one_line_per_damaged_file_and_answers(damaged_root) -> None:
    root, bad_trial, bad_epochs = damaged_root
    cli = str(Path(sys.executable).with_name("pldistill-sweep"))
    run = subprocess.run([cli, "status", "--results", str(root)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"warning: skipping {bad_trial}: "), run.stderr
    assert lines[1].startswith(f"warning: skipping {bad_epochs}: "), run.stderr
    assert "sw" in run.stdout and "Traceback" not in run.stderr
