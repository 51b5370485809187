"""Live progress off a terminal (Ray Job logs, CI): one line per ended trial in ``status``'s words."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest


def test_plain_lines_call_a_pruned_trial_pruned(capsys: pytest.CaptureFixture[str]) -> None:
    from pldistill.sweep.progress import SweepProgress

    progress = SweepProgress(3, "val_ua", "max")
    pruned, done, broken = (SimpleNamespace(trial_id=t, status="RUNNING") for t in ("8c3dc4d6", "1b2c3d4e", "9f9f9f9f"))
    with progress:
        for trial in (pruned, done, broken):
            progress.on_trial_start(0, [], trial)
        progress.on_trial_result(0, [], pruned, {"val_ua": 0.9})  # ASHA stops it after this epoch
        progress.on_trial_complete(0, [], pruned)
        progress.on_trial_result(0, [], done, {"val_ua": 0.6, "trial_result": json.dumps({"metrics": {"val_ua": 0.6}})})
        progress.on_trial_complete(0, [], done)
        progress.on_trial_error(0, [], broken)
    assert capsys.readouterr().out.splitlines() == [
        "trial 8c3dc4d6 pruned | trials of 3: 0 completed, 1 pruned, 0 failed, 2 running | best val_ua (max): -",
        "trial 1b2c3d4e completed | trials of 3: 1 completed, 1 pruned, 0 failed, 1 running "
        "| best val_ua (max): 0.6000 (1b2c3d4e)",
        "trial 9f9f9f9f failed | trials of 3: 1 completed, 1 pruned, 1 failed, 0 running "
        "| best val_ua (max): 0.6000 (1b2c3d4e)",
        "trials of 3: 1 completed, 1 pruned, 1 failed, 0 running | best val_ua (max): 0.6000 (1b2c3d4e)",
    ]
