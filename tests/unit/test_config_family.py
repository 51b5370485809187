"""The student family in the trial config: which student a trial trains, and EmoDistill's hyperparameters."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from pldistill.config import FAMILY_HPARAMS, STUDENT_FAMILIES, Hyperparameters, TrialConfig


def test_family_follows_the_objective_unless_set() -> None:
    assert TrialConfig().student_family == "audiolm"
    assert TrialConfig(hparams={"objective": "emodistill"}).student_family == "classifier"
    assert TrialConfig(hparams={"objective": "emodistill"}, model={"student": "classifier"}).student_family == \
        "classifier"
    with pytest.raises(ValidationError, match="objective 'emodistill' trains the classifier student, but "
                                              "model.student is 'audiolm'"):
        TrialConfig(hparams={"objective": "emodistill"}, model={"student": "audiolm"})
    with pytest.raises(ValidationError, match="objective 'pl_distill' trains the audiolm student"):
        TrialConfig(model={"student": "classifier"})
    with pytest.raises(ValidationError, match="student"):
        TrialConfig(model={"student": "llm"})


def test_emodistill_hyperparameters_have_the_papers_defaults_and_ranges() -> None:
    hp = Hyperparameters()
    assert (hp.tau_p, hp.tau_l, hp.w_p, hp.w_l, hp.w_cos) == (0.5, 4.0, 1.0, 1.0, 1.0)
    assert Hyperparameters(w_p=0.0, w_l=0.0, w_cos=0.0).w_p == 0.0  # ablations
    for name, bad in (("tau_p", 0.0), ("tau_l", -1.0), ("w_p", -0.1), ("w_cos", math.inf), ("w_l", math.nan),
                      ("tau_l", math.inf)):
        with pytest.raises(ValidationError, match=name):
            Hyperparameters(**{name: bad})


def test_family_hyperparameters_are_fields_and_belong_to_one_family() -> None:
    assert set(FAMILY_HPARAMS) == set(STUDENT_FAMILIES)
    names = [n for family in FAMILY_HPARAMS.values() for n in family]
    assert len(names) == len(set(names)) and set(names) <= set(Hyperparameters.model_fields)
    # what both families read
    assert {"objective", "lr", "weight_decay", "warmup_ratio", "kl_t2_scaling"}.isdisjoint(names)
