"""The model card says which seeds the trial ran, and, when it replicated until decided, why no more."""

from __future__ import annotations

from pathlib import Path

from pldistill.config import TrialConfig
from pldistill.serve.card import model_card
from pldistill.serve.source import TrialStudent


def _card(**row) -> str:
    cfg = TrialConfig.model_validate({"train": {"seeds": [0, 1, 2], "replicates": {"min_seeds": 3}}})
    src = TrialStudent(sweep="s", trial_id="t", seed=4, fold=1, epoch=2, best_dir=Path("best"), config=cfg,
                       row={"status": "completed", **row})
    return model_card(src, {"labels": ["a", "b"], "vocab": 10, "prompt": "p", "window_s": 4.0}, adapter=True)


def test_the_card_names_the_seeds_run_and_why_no_more():
    card = _card(seeds=[0, 1, 2, 3, 4], seeds_used=5, seeds_stop="cap")
    assert "seeds [0, 1, 2, 3, 4], added until decided: 5 seeds, stopped as the cap (max_seeds) was reached " \
           "(this folder: seed 4)" in card
    assert "stopped as its validation interval was narrow enough" in _card(seeds=[0, 1, 2], seeds_used=3,
                                                                           seeds_stop="precision")
    assert "seeds [0, 1, 2] (this folder" in _card(seeds=[0, 1, 2], seeds_used=3, seeds_stop="fixed")
