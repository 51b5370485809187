"""A process that runs trial after trial keeps a fold's data and its frozen encoder, and a trial run
on what the previous one kept trains exactly as a trial in a fresh process does."""

from __future__ import annotations

import pytest
from _corpus import SMALL_CORPUS

from pldistill.config import TrialConfig
from pldistill.prepare import prepare_trial
from pldistill.train import reuse
from pldistill.train.dataset import prepare_fold
from pldistill.train.teacher import ensure_teacher
from pldistill.train.teacher_cache import ensure_teacher_cache
from pldistill.train.trial import run_trial

_VOLATILE = ("wall_s", "samples_per_s")


@pytest.fixture(autouse=True)
def _reuse_off():
    reuse.enable(False)
    yield
    reuse.enable(False)


def _cfg(tmp_path, cache: str, name: str) -> TrialConfig:
    return TrialConfig.model_validate({
        "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS},
        "model": {"teacher_mode": "cached"},
        "train": {"epochs": 2, "batch_size": 8, "num_threads": 1, "max_steps_per_epoch": 2},
        "hparams": {"objective": "pl_distill", "lora_dropout": 0.1},
        "output_dir": str(tmp_path / name), "cache_dir": cache,
    })


def test_memo_keeps_the_last_value_of_each_kind_only_when_enabled() -> None:
    built: list[str] = []

    def build(tag: str):
        return lambda: built.append(tag) or object()

    a = reuse.memo("k", 1, build("a"))
    assert reuse.memo("k", 1, build("b")) is not a and built == ["a", "b"]  # off: always built
    reuse.enable()
    c = reuse.memo("k", 1, build("c"))
    assert reuse.memo("k", 1, build("d")) is c  # kept
    assert reuse.memo("other", 1, build("e")) is not c  # its own kind
    d = reuse.memo("k", 2, build("f"))  # another key replaces it
    assert d is not c and reuse.memo("k", 1, build("g")) is not c
    assert built == ["a", "b", "c", "e", "f", "g"]
    reuse.enable(False)
    assert reuse.memo("k", 1, build("h")) is not c and built[-1] == "h"


def test_a_trial_after_a_trial_in_one_process_trains_as_in_a_fresh_one(tmp_path, tiny_cache) -> None:
    cfg = _cfg(tmp_path, tiny_cache, "fresh")
    data = prepare_fold(cfg, 1)
    # the teacher cache built first, so both trials read it with an encoder-only teacher, as sweeps do
    ensure_teacher_cache(cfg, data, ensure_teacher(cfg, data, log=lambda m: None)[0], log=lambda m: None)
    fresh = run_trial(prepare_trial(cfg))
    reuse.enable()
    data = prepare_fold(cfg, 1)
    teacher, _ = ensure_teacher(cfg, data, encoder_only=True)
    assert prepare_fold(cfg, 1) is data and ensure_teacher(cfg, data, encoder_only=True)[0] is teacher  # kept
    teacher.audio_tower.train()  # as a trial leaves it (its head trains the whole student)
    assert ensure_teacher(cfg, data, encoder_only=True)[0] is teacher and not teacher.audio_tower.training
    assert not teacher.audio_tower.training and not any(p.requires_grad for p in teacher.audio_tower.parameters())
    again = run_trial(prepare_trial(_cfg(tmp_path, tiny_cache, "again")))  # on the kept fold and encoder
    assert prepare_fold(cfg, 1) is data
    strip = [{k: v for k, v in row.items() if k not in _VOLATILE} for row in fresh.folds[0].epochs]
    assert [{k: v for k, v in row.items() if k not in _VOLATILE} for row in again.folds[0].epochs] == strip
    assert again.metrics == fresh.metrics
