"""Golden values: every objective's total and terms on a fixed float64 batch, pinned to rtol 1e-6.

A failure here means the numbers changed. If the change is intended, regenerate deliberately and
review the diff of the JSON file:

    PLDISTILL_REGEN_GOLDEN=1 .venv/bin/pytest tests/unit/losses/test_loss_golden.py
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from _objectives import objective

from pldistill.losses import OBJECTIVES, DistillBatch

GOLDEN = Path(__file__).with_name("golden_objectives.json")
SEED = 1234
RTOL = 1e-6

#: Extra configurations beyond each objective's defaults: non-default options must stay pinned too.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "pl_distill[debiased]": ("pl_distill", {"cka_estimator": "debiased"}),
    "pl_distill[t2]": ("pl_distill", {"kl_t2_scaling": True}),
    "pl_distill[t1,chunked]": ("pl_distill", {"temperature": 1.0, "kl_chunk_size": 2}),
    "reverse_kl[gamma=0.5]": ("reverse_kl", {"gamma": 0.5}),
    "caad[a=0]": ("caad", {"caad_contrast": 0.0}),
    # the audio-logit KL, off by default for caad (issue 25), as an explicit option
    "caad[beta=0.8]": ("caad", {"beta": 0.8}),
    "caad[a=2.5,t1,chunked]": ("caad", {"caad_contrast": 2.5, "temperature": 1.0, "kl_chunk_size": 2}),
}


def _signature(batch: DistillBatch) -> dict[str, float]:
    """Sums of the generated inputs: tells an input-generation change from a loss change."""
    out = {}
    for name in ("student_logits", "teacher_logits", "student_audio", "teacher_audio", "audio_weights",
                 "teacher_text_logits"):
        t = getattr(batch, name).detach().double()
        out[name] = float(
            (t * torch.arange(1, t.shape[1] + 1, dtype=t.dtype).view(1, -1, *[1] * (t.dim() - 2))).sum()
        )
    out["labels"] = float(batch.labels.clamp_min(0).sum())
    return out


def _compute(batch: DistillBatch) -> dict[str, dict[str, Any]]:
    configs = {name: (name, {}) for name, o in OBJECTIVES.items() if o.family == "audiolm"} | VARIANTS
    values: dict[str, dict[str, Any]] = {}
    for key, (name, kwargs) in configs.items():
        out = objective(name, **kwargs)(batch)  # kl_chunk_size is an argument, the rest hyperparameters
        values[key] = {"total": float(out.total), "terms": {t: float(v) for t, v in out.terms.items()}}
    return values


def _round(x: float) -> float:
    return float(f"{x:.10g}")


def test_golden_objective_values(make_batch: Callable[..., DistillBatch]) -> None:
    batch = make_batch(seed=SEED, dtype=torch.float64)
    signature, values = _signature(batch), _compute(batch)
    if os.environ.get("PLDISTILL_REGEN_GOLDEN") == "1":
        payload = {
            "seed": SEED,
            "dtype": "float64",
            "inputs": {k: _round(v) for k, v in signature.items()},
            "objectives": {
                key: {"total": _round(v["total"]), "terms": {t: _round(x) for t, x in v["terms"].items()}}
                for key, v in values.items()
            },
        }
        GOLDEN.write_text(json.dumps(payload, indent=2) + "\n")
        pytest.skip(f"regenerated {GOLDEN.name}")
    golden = json.loads(GOLDEN.read_text())
    for k, v in golden["inputs"].items():
        assert signature[k] == pytest.approx(v, rel=RTOL), f"the test batch itself changed ({k})"
    assert set(values) == set(golden["objectives"]), "objectives added or removed: regenerate deliberately"
    for key, expected in golden["objectives"].items():
        got = values[key]
        assert set(got["terms"]) == set(expected["terms"]), key
        for term, x in expected["terms"].items():
            assert got["terms"][term] == pytest.approx(x, rel=RTOL), f"{key}: term {term}"
        assert got["total"] == pytest.approx(expected["total"], rel=RTOL), f"{key}: total"
