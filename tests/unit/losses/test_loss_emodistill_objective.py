"""The objective ``emodistill`` as registered: its wiring gives CE + w_p KL_P + w_l KL_L + w_cos (cos_P + cos_L).

The terms themselves have their NumPy references in test_loss_emodistill.py; here the check is that
the registry (term names, weights from the hyperparameters, the gates of the single-teacher
ablations, the temperatures) puts them together as the issue's formula says, written out again
with plain torch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pldistill.config import Hyperparameters
from pldistill.losses import OBJECTIVES, ClassifierBatch, build_objective


def _batch(seed: int = 0, b: int = 6, c: int = 4, ep: int = 5, el: int = 7) -> ClassifierBatch:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return ClassifierBatch(student_logits=r(b, c).requires_grad_(), labels=torch.randint(0, c, (b,), generator=g),
                           student_pros=r(b, ep).requires_grad_(), student_ling=r(b, el).requires_grad_(),
                           teacher_p_logits=r(b, c), teacher_l_logits=r(b, c), teacher_p_emb=r(b, ep),
                           teacher_l_emb=r(b, el))


def _kl(t: torch.Tensor, s: torch.Tensor, tau: float) -> torch.Tensor:
    p = torch.softmax(t / tau, -1)
    return (p * (torch.log(p) - torch.log_softmax(s / tau, -1))).sum(-1).mean()


def _one_minus_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (1 - (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))).mean()


def _formula(x: ClassifierBatch, w_p: float, w_l: float, w_cos: float, tau_p: float, tau_l: float) -> torch.Tensor:
    ce = F.cross_entropy(x.student_logits, x.labels)
    kl_p, kl_l = _kl(x.teacher_p_logits, x.student_logits, tau_p), _kl(x.teacher_l_logits, x.student_logits, tau_l)
    cos_p, cos_l = _one_minus_cos(x.student_pros, x.teacher_p_emb), _one_minus_cos(x.student_ling, x.teacher_l_emb)
    # a teacher switched off (weight 0) takes its cosine term with it
    return ce + w_p * kl_p + w_l * kl_l + w_cos * ((cos_p if w_p else 0) + (cos_l if w_l else 0))


@pytest.mark.parametrize("w_p,w_l,w_cos,tau_p,tau_l", [
    (1.0, 1.0, 1.0, 0.5, 4.0),  # the defaults (paper temperatures)
    (0.3, 2.0, 0.7, 1.5, 2.5),
    (0.0, 1.0, 0.5, 0.5, 4.0),  # w/o prosodic teacher
    (1.0, 0.0, 0.5, 0.5, 4.0),  # w/o linguistic teacher
])
def test_total_is_the_issue_formula(w_p, w_l, w_cos, tau_p, tau_l) -> None:
    hp = Hyperparameters(objective="emodistill", w_p=w_p, w_l=w_l, w_cos=w_cos, tau_p=tau_p, tau_l=tau_l)
    objective = build_objective("emodistill", hp.model_dump())
    batch = _batch()
    out = objective(batch)
    expected = _formula(batch, w_p, w_l, w_cos, tau_p, tau_l)
    assert out.total.item() == pytest.approx(expected.item(), rel=1e-10)
    # every term logged unweighted, whatever its weight; total = weighted sum of the logged terms
    assert list(out.terms) == ["class_ce", "kl_prosodic", "kl_linguistic", "cos_prosodic", "cos_linguistic"]
    assert out.total.item() == pytest.approx(sum(objective.weights[k] * v.item() for k, v in out.terms.items()))
    # and the gradients are the formula's
    got = torch.autograd.grad(out.total, [batch.student_logits, batch.student_pros, batch.student_ling],
                              allow_unused=True)
    want = torch.autograd.grad(expected, [batch.student_logits, batch.student_pros, batch.student_ling],
                               allow_unused=True)
    for g, w in zip(got, want):
        assert (g is None and w is None) or torch.allclose(g if g is not None else torch.zeros_like(w),
                                                           w if w is not None else torch.zeros_like(g))


def test_defaults_are_the_papers_temperatures_and_kl_t2_uses_each_terms_own() -> None:
    hp = Hyperparameters(objective="emodistill")
    assert (hp.tau_p, hp.tau_l) == (0.5, 4.0)
    scaled = build_objective("emodistill", {**hp.model_dump(), "kl_t2_scaling": True, "w_p": 2.0})
    assert scaled.weights["kl_prosodic"] == pytest.approx(2.0 * 0.5**2)
    assert scaled.weights["kl_linguistic"] == pytest.approx(1.0 * 4.0**2)
    assert scaled.weights["cos_prosodic"] == 1.0  # not a KL term


def test_labels_family_and_ablation_rows() -> None:
    spec = OBJECTIVES["emodistill"]
    assert spec.family == "classifier" and all(OBJECTIVES[n].family == "audiolm" for n in OBJECTIVES if n != spec.name)
    assert spec.method_label({"w_p": 1.0, "w_l": 1.0}) == "EmoDistill"
    assert spec.method_label({"w_p": 0.0, "w_l": 1.0}) == "EmoDistill w/o prosodic teacher"
    assert spec.method_label({"w_p": 1.0, "w_l": 0}) == "EmoDistill w/o linguistic teacher"


def test_missing_teacher_fields_are_named() -> None:
    batch = _batch()
    batch.teacher_l_emb = None
    with pytest.raises(ValueError, match="teacher_l_emb"):
        build_objective("emodistill", Hyperparameters(objective="emodistill").model_dump())(batch)


def test_unlabelled_clips_leave_the_ce_and_stay_in_every_teacher_term() -> None:
    """data.labelled_fraction: the class CE of unlabelled clips is left out (NumPy float64 reference:
    the labelled clips' -log softmax summed, over all B), every teacher term still reads all clips."""
    hp = Hyperparameters(objective="emodistill")
    objective = build_objective("emodistill", hp.model_dump())
    full = _batch(3)
    labelled = torch.tensor([True, False, True, True, False, False])
    masked = ClassifierBatch(**{**full.__dict__, "labelled": labelled})
    out, ref = objective(masked), objective(full)
    z = full.student_logits.detach().numpy()
    log_p = z - z.max(-1, keepdims=True) - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True))
    y = full.labels.numpy()
    expected = sum(-log_p[i, y[i]] for i in range(len(y)) if labelled[i]) / len(y)
    assert out.terms["class_ce"].item() == pytest.approx(expected, rel=1e-12)
    for name in ("kl_prosodic", "kl_linguistic", "cos_prosodic", "cos_linguistic"):
        torch.testing.assert_close(out.terms[name], ref.terms[name])
    torch.testing.assert_close(out.total, ref.total - ref.terms["class_ce"] + out.terms["class_ce"])
    # an unlabelled clip's gold label cannot move the loss: any placeholder gives the same figures
    other = ClassifierBatch(**{**masked.__dict__, "labels": torch.where(labelled, full.labels, 0)})
    torch.testing.assert_close(objective(other).total, out.total)
