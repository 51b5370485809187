"""What a sweep leaves on the console is ours: Tune's start block (its experiment table, the staging
path and the TensorBoard hint into Ray's temp folder) and Optuna's "A new study created in memory"
do not appear. The launch's own Tuner (``launch._tuner``: searcher, scheduler, callbacks, run config)
runs smoke.yaml's search on a private Ray with a toy trainable in place of the trial driver."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import private_ray  # tests/conftest.py, imported with this module (as test_metrics_export does)

from pldistill.sweep import load_sweep

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_tuner_prints_only_our_lines(tmp_path, monkeypatch, capfd):
    import pldistill.sweep.driver as driver
    from pldistill.sweep.launch import LaunchOptions, _tuner
    from pldistill.sweep.space import build_tune_search

    def toy(config, sweep):  # defined here: pickled by value for Tune's trial processes
        from ray import tune

        for epoch in range(1, 4):
            tune.report({"val_ua": 0.25 + 0.1 * epoch + 0.01 * float(config.get("alpha", 0.0)),
                         "epoch": epoch})

    text = (REPO / "sweeps/smoke.yaml").read_text().replace("results: results", f"results: {tmp_path}")
    (tmp_path / "smoke.yaml").write_text(text.replace("num_samples: 6", "num_samples: 3"))
    sweep = load_sweep(tmp_path / "smoke.yaml")
    monkeypatch.setattr(driver, "trial_driver", toy)
    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    with private_ray(resources={driver.DRIVER_RESOURCE: 2}):
        search = build_tune_search(sweep)
        tuner, _, progress = _tuner(sweep, search, tmp_path, LaunchOptions(progress=True), None, resume=False)
        with progress:
            grid = tuner.fit()
    out, err = capfd.readouterr()
    assert len(grid) == 3 and grid.num_errors == 0, err[-3000:]
    assert out.count("| trials of 3: ") == 3, out  # our progress: one line per ended trial
    for noise in ("TensorBoard", "tensorboard --logdir", "View detailed results", "Configuration for experiment",
                  "A new study created", "is deprecated"):
        assert noise not in out + err, (noise, (out + err)[-3000:])
