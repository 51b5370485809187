"""Planning: which artifact entries a sweep's trials read, each once (no builds here)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pldistill.config import TrialConfig
from pldistill.prepare import ARTIFACTS, needed, plan
from pldistill.sweep.load import load_sweep
from pldistill.sweep.space import every_trial_config

SWEEPS = Path(__file__).resolve().parents[3] / "sweeps"


def _cfg(objective: str, **extra) -> TrialConfig:
    hp = {"objective": objective, **extra.pop("hparams", {})}
    return TrialConfig.model_validate({"data": {"source": "synthetic", "dataset": "synthetic", "folds": [1, 2]},
                                       "model": {"teacher_mode": "cached", **extra.pop("model", {})},
                                       "hparams": hp, "cache_dir": "/tmp/c", **extra})


def _counts(configs) -> Counter:
    return Counter(s.artifact for s in plan(configs))


def test_what_each_family_reads() -> None:
    assert [a.name for a in needed(_cfg("pl_distill"))] == [
        "corpus", "features", "teacher", "student_prior", "teacher_cache"]
    assert [a.name for a in needed(_cfg("emodistill"))] == [
        "corpus", "features", "teacher", "egemaps", "prosodic_teacher", "linguistic_teacher"]
    # CAAD on metadata targets reads the fold's eGeMAPS; online, no trial reads a teacher cache
    assert "egemaps" in {a.name for a in needed(_cfg("caad", hparams={"pseudo_target": "metadata"}))}
    assert "teacher_cache" not in {a.name for a in needed(_cfg("sft", model={"teacher_mode": "online"}))}


def test_configs_that_share_an_entry_share_its_step() -> None:
    configs = [_cfg("sft"), _cfg("forward_kl"), _cfg("pl_distill", hparams={"alpha": 0.3}), _cfg("emodistill"),
               _cfg("caad", hparams={"pseudo_target": "metadata", "caad_contrast": 1.0})]
    counts = _counts(configs)
    # one corpus and student prior; per fold one features file, teacher, eGeMAPS and EmoDistill teachers;
    # two teacher caches per fold (gold and metadata targets): 2 folds
    assert counts == {"corpus": 1, "features": 2, "teacher": 2, "egemaps": 2, "prosodic_teacher": 2,
                      "linguistic_teacher": 2, "student_prior": 1, "teacher_cache": 4}
    steps = plan(configs)
    order = list(ARTIFACTS)
    assert [order.index(s.artifact) for s in steps] == sorted(order.index(s.artifact) for s in steps)


def test_a_field_in_a_key_makes_a_second_entry() -> None:
    base = _cfg("pl_distill")
    other_teacher = _cfg("pl_distill", model={"teacher_finetune": {"epochs": 3}})
    assert _counts([base, other_teacher])["teacher"] == 4
    other_cache = _cfg("pl_distill", cache_dir="/tmp/elsewhere")
    assert _counts([base, other_cache])["corpus"] == 2
    # a hyperparameter no artifact reads does not
    assert _counts([base, _cfg("pl_distill", hparams={"lr": 1e-3})]) == _counts([base])


def test_every_variant_of_the_shipped_grid_is_prepared() -> None:
    sweep = load_sweep(SWEEPS / "seed_methods_grid.yaml")
    configs = every_trial_config(sweep)
    assert len(configs) == len(sweep.search.variants)
    counts = _counts(configs)
    folds = len(sweep.base.data.folds)
    assert counts["teacher"] == folds and counts["prosodic_teacher"] == folds
    assert counts["teacher_cache"] == 2 * folds  # gold and metadata targets (caad_a1_metadata)


def test_sampled_objectives_are_prepared() -> None:
    sweep = load_sweep(SWEEPS / "tuning_budget.yaml")
    configs = every_trial_config(sweep)
    assert sorted(c.hparams.objective for c in configs) == ["forward_kl", "pl_distill", "sft"]
    assert _counts(configs)["teacher_cache"] == len(sweep.base.data.folds)
