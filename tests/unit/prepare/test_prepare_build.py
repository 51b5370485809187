"""Preparation builds each entry once and reports it; a trial reads entries and never builds one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _corpus import SMALL_CORPUS

from pldistill.config import TrialConfig
from pldistill.errors import MissingArtifactError
from pldistill.prepare import PrepareOptions, prepare_configs
from pldistill.train.teacher import teacher_dir
from pldistill.train.trial import run_trial


def _cfg(root, objective: str = "pl_distill") -> TrialConfig:
    return TrialConfig.model_validate({
        "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS},
        "model": {"teacher_mode": "cached", "teacher_finetune": {"epochs": 1}},
        "train": {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 2, "num_threads": 1},
        "hparams": {"objective": objective}, "output_dir": str(root / "run"), "cache_dir": str(root / "cache"),
    })


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A config, and the reports of preparing it twice into a fresh cache."""
    root = tmp_path_factory.mktemp("prep")
    cfg = _cfg(root)
    opts = PrepareOptions(log=lambda m: None, parallel=False)
    return cfg, prepare_configs([cfg], opts), prepare_configs([cfg], opts)


def test_a_trial_refuses_to_build_what_is_missing(tmp_path) -> None:
    cfg = _cfg(tmp_path)
    with pytest.raises(MissingArtifactError, match="synthetic corpus is not built; prepare it first") as err:
        run_trial(cfg)
    assert "pldistill-sweep prepare" in str(err.value) and str(tmp_path / "cache") in str(err.value)
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir()), "a refused trial wrote into the cache"


def test_each_entry_is_built_once_then_reused(prepared) -> None:
    cfg, first, again = prepared
    names = [e.artifact for e in first.entries]
    assert names == ["corpus", "features", "teacher", "student_prior", "teacher_cache"]
    assert all(e.built for e in first.entries), first.entries
    assert [e.path for e in again.entries] == [e.path for e in first.entries]
    assert not any(e.built for e in again.entries), again.entries
    assert not list((cfg.cache_dir / "teachers").glob(".*tmp-*")), "a temporary was left behind"


def test_a_prepared_trial_runs_and_a_removed_entry_is_an_error(prepared, tmp_path) -> None:
    cfg, first, _ = prepared
    result = run_trial(cfg.model_copy(update={"output_dir": tmp_path / "ok"}))
    assert result.folds[0].best  # it trained and was scored
    teacher = next(e.path for e in first.entries if e.artifact == "teacher")
    moved = tmp_path / "teacher-aside"
    shutil.move(teacher, moved)
    try:
        with pytest.raises(MissingArtifactError, match="fine-tuned teacher fold 1 is not built"):
            # the encoder-only load happens before the (complete) cache is read
            run_trial(cfg.model_copy(update={"output_dir": tmp_path / "missing"}))
        assert not Path(teacher).exists(), "the trial rebuilt the teacher"
    finally:
        shutil.move(moved, teacher)
    assert teacher_dir(cfg, _fold(cfg)).as_posix() == teacher


def _fold(cfg):
    from pldistill.train.dataset import prepare_fold

    return prepare_fold(cfg, 1)
