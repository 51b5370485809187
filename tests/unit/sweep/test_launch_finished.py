"""Launching a finished sweep: reported as it is when its file is unchanged, refused in one line
naming the first changed key when the file has changed (the interrupted case's rule), before Ray starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from pldistill.cli._app import run_app
from pldistill.results import ResultsStore, TrialRecord

SWEEP = """\
name: done
results: {results}
base:
  data: {{source: synthetic, dataset: synthetic, folds: [1]}}
  model: {{teacher: tiny, student_llm: tiny}}
  train: {{epochs: 3, batch_size: 4, grad_accum: 1}}
fixed:
  objective: pl_distill
search:
  algorithm: optuna
  num_samples: 2
  space:
    alpha: {{type: uniform, low: 0.0, high: 2.0}}
"""


@pytest.fixture
def finished(tmp_path: Path) -> Path:
    """A sweep file whose sweep finished (sweep.json says so, with the config it ran) and one trial row."""
    from pldistill.sweep.load import load_sweep

    path = tmp_path / "done.yaml"
    path.write_text(SWEEP.format(results=tmp_path / "results"))
    store = ResultsStore(tmp_path / "results", "done")
    store.write_sweep_meta({"config": load_sweep(path).model_dump(mode="json"), "status": "finished",
                            "metric": "val_ua", "mode": "max"})
    store.write_trial(TrialRecord(trial_id="t0", status="pruned", objective="pl_distill", dataset="synthetic",
                                  folds=[1], hparams={"alpha": 1.0}, val_ua=0.4))
    return path


def test_unchanged_finished_sweep_is_reported_with_status_words(finished: Path, capsys) -> None:
    import pldistill.cli.launch  # noqa: F401  (registers the command)

    assert run_app(["launch", str(finished), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "already finished" in out
    assert "sweep done finished: 0 completed, 1 pruned, 0 failed, 0 running" in out


def test_changed_finished_sweep_is_refused_naming_the_key(finished: Path, capsys) -> None:
    import pldistill.cli.launch  # noqa: F401

    finished.write_text(finished.read_text().replace("epochs: 3", "epochs: 4"))
    before = sorted(p.name for p in (finished.parent / "results" / "done").rglob("*"))
    assert run_app(["launch", str(finished)]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "already finished" not in out
    assert err.startswith(f"error: {finished}: base.train.epochs: differs from the finished run in ")
    assert "give the sweep a new name" in err
    assert sorted(p.name for p in (finished.parent / "results" / "done").rglob("*")) == before


def test_a_section_added_since_the_sweep_ran_is_not_a_change(finished: Path, capsys) -> None:
    """sweep.json written before a sweep-file section existed (here ``tracking``, absent from the
    recorded config) still matches an unchanged file: the recorded config is read through today's model,
    so the new section counts as its default. A real change is still refused."""
    import pldistill.cli.launch  # noqa: F401

    store = ResultsStore(finished.parent / "results", "done")
    meta = store.read_sweep_meta()
    assert "tracking" in meta["config"]
    del meta["config"]["tracking"]
    store.write_sweep_meta(meta)
    assert run_app(["launch", str(finished), "--quiet"]) == 0
    assert "already finished" in capsys.readouterr().out
    finished.write_text(finished.read_text().replace("num_samples: 2", "num_samples: 3"))
    assert run_app(["launch", str(finished), "--quiet"]) == 2
    assert "search.num_samples: differs from the finished run" in capsys.readouterr().err
