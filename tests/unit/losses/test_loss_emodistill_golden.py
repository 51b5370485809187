"""Golden values of the objective ``emodistill``: pinned numbers that catch silent numeric drift in its
terms or their wiring (regenerate with ``PLDISTILL_REGEN_GOLDEN=1`` after an intended change)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from pldistill.config import Hyperparameters
from pldistill.losses import ClassifierBatch, build_objective

GOLDEN = Path(__file__).with_name("golden_emodistill.json")
CONFIGS = {"defaults": {}, "w_p=0": {"w_p": 0.0}, "w_l=0,t2": {"w_l": 0.0, "kl_t2_scaling": True},
           "tau_p=2,tau_l=1,w_cos=0.3": {"tau_p": 2.0, "tau_l": 1.0, "w_cos": 0.3}}


def _batch() -> ClassifierBatch:
    g = torch.Generator().manual_seed(1234)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    return ClassifierBatch(student_logits=r(5, 4), labels=torch.tensor([0, 3, 1, 2, 3]), student_pros=r(5, 6),
                           student_ling=r(5, 3), teacher_p_logits=2 * r(5, 4), teacher_l_logits=r(5, 4),
                           teacher_p_emb=r(5, 6), teacher_l_emb=r(5, 3))


def test_golden_emodistill_values() -> None:
    batch, values = _batch(), {}
    for key, hp in CONFIGS.items():
        out = build_objective("emodistill", Hyperparameters(objective="emodistill", **hp).model_dump())(batch)
        values[key] = {"total": float(f"{float(out.total):.10g}"),
                       "terms": {t: float(f"{float(v):.10g}") for t, v in out.terms.items()}}
    if os.environ.get("PLDISTILL_REGEN_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(values, indent=2) + "\n")
        pytest.skip(f"regenerated {GOLDEN.name}")
    golden = json.loads(GOLDEN.read_text())
    assert golden.keys() == values.keys()
    for key, want in golden.items():
        assert values[key]["total"] == pytest.approx(want["total"], rel=1e-8), key
        assert values[key]["terms"] == pytest.approx(want["terms"], rel=1e-8), key
