"""Fixtures of the export/predict tests: one short trial recorded as a sweep, and its exports.

The trial trains the tiny student for one short epoch on the synthetic corpus, reusing the
session's ``tiny_cache`` (corpus, fine-tuned teacher, student prior), and is recorded under
``results/toy/`` exactly as the sweep's recorder writes a trial; the folder layout is the sweep's
(``runs/<trial>/seed_<s>/fold_<k>/best``). Exports are made once per session and only read by the tests.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
from _corpus import SMALL_CORPUS

SWEEP = "toy"
TRIAL = "t_best"


def _trial_config(results: Path, cache: str, trial: str, seed: int = 0):
    from pldistill.config import TrialConfig

    return TrialConfig.model_validate({
        "name": trial,
        "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS},
        "train": {"epochs": 1, "batch_size": 8, "grad_accum": 1, "num_threads": 2, "max_steps_per_epoch": 6,
                  "seeds": [seed]},
        "hparams": {"objective": "sft", "lora_rank": 4},
        "output_dir": str(results / SWEEP / "runs" / trial), "cache_dir": cache,
    })


@pytest.fixture(scope="session")
def toy_sweep(tmp_path_factory, tiny_cache) -> Path:
    """A results folder holding sweep ``toy`` with one completed trial ``t_best`` (fold 1)."""
    from pldistill.prepare import prepare_trial
    from pldistill.results import ResultsStore, TrialRecord
    from pldistill.train.trial import run_trial

    results = tmp_path_factory.mktemp("results")
    cfg = _trial_config(results, tiny_cache, TRIAL)
    result = run_trial(prepare_trial(cfg))
    store = ResultsStore(results, SWEEP)
    store.write_sweep_meta({"metric": "val_ua", "mode": "max"})
    store.write_trial(TrialRecord.from_result(asdict(result), trial_id=TRIAL, status="completed",
                                              hparams={"lora_rank": 4}, objective="sft", dataset="synthetic",
                                              config_json=cfg.to_json()))
    return results


@pytest.fixture(scope="session")
def trial_student(toy_sweep):
    from pldistill.serve import find_trial

    return find_trial(toy_sweep, SWEEP, trial=TRIAL)


@pytest.fixture(scope="session")
def reference(trial_student):
    """The closed-set test predictions the trial itself recorded at its best epoch."""
    from pldistill.serve.audio_lm import recorded_predictions

    recorded = recorded_predictions(trial_student)
    assert recorded is not None, "the trial records its best epoch's test predictions"
    return recorded


@pytest.fixture(scope="session")
def merged_export(toy_sweep, tmp_path_factory) -> Path:
    from pldistill.serve import export_student

    out = tmp_path_factory.mktemp("exports") / "merged"
    export_student(toy_sweep, SWEEP, out)
    return out


@pytest.fixture(scope="session")
def adapter_export(toy_sweep, tmp_path_factory) -> Path:
    from pldistill.serve import export_student

    out = tmp_path_factory.mktemp("exports") / "adapter"
    export_student(toy_sweep, SWEEP, out, trial=TRIAL, adapter=True)
    return out


@pytest.fixture(scope="session")
def test_clips(trial_student):
    """The trial's test clips (key -> wav path and label), read from its fold's manifests."""
    from pldistill.data import load_fold
    from pldistill.train.dataset import manifests_dir

    cfg = trial_student.config
    root, audio_root = manifests_dir(cfg)
    return load_fold(root, cfg.data.dataset, trial_student.fold, audio_root=audio_root,
                     val_fraction=cfg.data.val_fraction, val_seed=cfg.data.val_seed).test
