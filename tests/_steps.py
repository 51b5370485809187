"""One training step's outputs and student gradients, and their comparison: what the step tests share."""

from __future__ import annotations

import torch

from pldistill.models.audiolm import AudioLMHead
from pldistill.train.step import DistillModels, distill_step

#: fp32 tolerance of the step equivalence tests (terms, total, student gradients).
TOL = dict(rtol=1e-5, atol=1e-5)


def step_and_grads(models: DistillModels, head: AudioLMHead, batch, pseudo=None):
    """``distill_step`` on ``batch`` (and its ``pseudo`` batch), backward; the output and the head's gradients."""
    head.zero_grad(set_to_none=True)
    out = distill_step(models, batch, pseudo)
    out.total.backward()
    return out, {n: p.grad.clone() for n, p in head.named_parameters() if p.grad is not None}


def assert_same_step(a, ga, b, gb, tol: dict | None = None) -> None:
    """Two steps give the same terms (in order), total and student gradients, within ``tol`` (:data:`TOL`)."""
    tol = TOL if tol is None else tol
    assert list(a.terms) == list(b.terms)
    for k in a.terms:
        torch.testing.assert_close(a.terms[k], b.terms[k], **tol, msg=k)
    torch.testing.assert_close(a.total, b.total, **tol)
    assert ga.keys() == gb.keys() and len(ga) > 0
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], **tol, msg=k)
