"""CE under a labelled fraction (issue 25): the sum over a batch's labelled clips is divided by their
expected number, B * rho, so CE keeps its eq. 8 weight; ``ce_divisor: batch`` keeps the division by B.
A NumPy reference for the terms, then the wiring into the objective (unfused and fused paths)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _objectives import objective as build

from pldistill.losses import TERMS, ClassifierBatch, DistillBatch, TermOptions
from pldistill.losses.ce import cross_entropy

B, L, V, H = 6, 5, 7, 4
LABELLED = torch.tensor([True, False, False, True, False, False])
RHO = 1 / 3


def _batch(seed: int = 0, labelled: torch.Tensor = LABELLED) -> tuple[DistillBatch, torch.Tensor, torch.Tensor]:
    """A float64 batch whose student logits are ``hidden @ head.T`` (so the fused path can read the
    same numbers), every clip with 1-3 response positions, the CE masked to the labelled clips."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, L, H, generator=g, dtype=torch.float64)
    head = torch.randn(V, H, generator=g, dtype=torch.float64)
    response = torch.zeros(B, L, dtype=torch.bool)
    for b in range(B):
        response[b, L - 1 - b % 3:] = True
    labels = torch.full((B, L), -100, dtype=torch.long)
    labels[response] = torch.randint(0, V, (int(response.sum()),), generator=g)
    teacher = torch.randn(B, L, V, generator=g, dtype=torch.float64)
    audio = torch.zeros(B, L, dtype=torch.bool)
    audio[:, :2] = True
    batch = DistillBatch(student_logits=hidden @ head.T, labels=labels, response_mask=response, audio_mask=audio,
                         ce_mask=response & labelled[:, None], teacher_logits=teacher)
    return batch, hidden, head


def _reference(batch: DistillBatch, rho: float, mean: bool = False) -> float:
    """NumPy float64: each labelled clip's CE summed (or averaged) over its response tokens, the sum
    over clips divided by B * rho."""
    logits, labels = batch.student_logits.detach().numpy(), batch.labels.numpy()
    mask = batch.ce_mask.numpy()
    total = 0.0
    for b in range(logits.shape[0]):
        rows = np.flatnonzero(mask[b])
        if rows.size:
            z = logits[b, rows]
            logp = z - z.max(-1, keepdims=True) - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True))
            nll = -logp[np.arange(rows.size), labels[b, rows]]
            total += nll.mean() if mean else nll.sum()
    return total / (logits.shape[0] * rho)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_ce_term_is_the_labelled_sum_over_b_rho(reduction: str) -> None:
    batch, _, _ = _batch()
    opts = TermOptions(temperature=2.0, cka_estimator="biased", ce_reduction=reduction, ce_share=RHO)
    expected = _reference(batch, RHO, mean=reduction == "mean")
    assert float(TERMS["ce"].fn(batch, opts)) == pytest.approx(expected, rel=1e-12)
    assert float(cross_entropy(batch.student_logits, batch.labels, batch.ce_mask,
                               reduction="sample_sum" if reduction == "sum" else "sample_mean",
                               share=RHO)) == pytest.approx(expected, rel=1e-12)


def test_class_ce_term_is_the_labelled_sum_over_b_rho() -> None:
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(B, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (B,), generator=g)
    opts = TermOptions(temperature=2.0, cka_estimator="biased", ce_reduction="sum", ce_share=RHO)
    z = logits.numpy()
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    nll = -logp[np.arange(B), labels.numpy()]
    got = TERMS["class_ce"].fn(ClassifierBatch(student_logits=logits, labels=labels, labelled=LABELLED), opts)
    assert float(got) == pytest.approx(nll[LABELLED.numpy()].sum() / (B * RHO), rel=1e-12)
    # a batch that happens to hold labelled clips only is still divided by rho (its expected share)
    got = TERMS["class_ce"].fn(ClassifierBatch(student_logits=logits, labels=labels), opts)
    assert float(got) == pytest.approx(nll.sum() / (B * RHO), rel=1e-12)


def test_share_is_checked() -> None:
    batch, _, _ = _batch()
    for share, reduction in ((0.0, "sample_sum"), (1.5, "sample_sum"), (0.5, "batch_mean")):
        with pytest.raises(ValueError, match="share"):
            cross_entropy(batch.student_logits, batch.labels, batch.ce_mask, reduction=reduction, share=share)
    with pytest.raises(ValueError, match="labelled_share"):
        build("sft", labelled_share=0.0)


def test_ce_keeps_its_weight_under_a_labelled_fraction() -> None:
    """Ten copies of one clip, one of them labelled (rho = 0.1): CE is the fully labelled batch's (its
    weight against the KL terms is eq. 8's); ``ce_divisor: batch`` gives a tenth of it."""
    batch, _, _ = _batch()
    one = {f: getattr(batch, f)[:1].repeat(10, *([1] * (getattr(batch, f).dim() - 1)))
           for f in ("student_logits", "labels", "response_mask", "audio_mask", "teacher_logits")}
    full = DistillBatch(**one)
    labelled = torch.zeros(10, dtype=torch.bool)
    labelled[3] = True
    part = DistillBatch(**one, ce_mask=one["response_mask"] & labelled[:, None])
    ce_full = float(build("forward_kl")(full).terms["ce"])
    assert float(build("forward_kl", labelled_share=0.1)(part).terms["ce"]) == pytest.approx(ce_full, rel=1e-12)
    ce_batch = float(build("forward_kl", labelled_share=0.1, ce_divisor="batch")(part).terms["ce"])
    assert ce_batch == pytest.approx(0.1 * ce_full, rel=1e-12)


@pytest.mark.parametrize("divisor", ["expected_labelled", "batch"])
def test_objective_reads_the_option(divisor: str) -> None:
    objective = build("forward_kl", labelled_share=RHO, ce_divisor=divisor)
    rho = RHO if divisor == "expected_labelled" else 1.0
    assert objective.options.ce_share == rho
    assert build("forward_kl", ce_divisor=divisor).options.ce_share == 1.0  # every clip labelled: nothing to do
    batch, _, _ = _batch()
    out = objective(batch)
    assert float(out.terms["ce"]) == pytest.approx(_reference(batch, rho), rel=1e-12)
    assert float(out.total) == pytest.approx(float(out.terms["ce"] + out.terms["kl_response"]), rel=1e-12)


def _single_clip(batch: DistillBatch, b: int) -> DistillBatch:
    return DistillBatch(**{f: None if getattr(batch, f) is None else getattr(batch, f)[b:b + 1]
                           for f in ("student_logits", "labels", "response_mask", "audio_mask", "ce_mask",
                                     "teacher_logits", "student_hidden")},
                        student_lm_head=batch.student_lm_head)


@pytest.mark.parametrize("fused", [False, True])
def test_a_batch_of_b_equals_b_accumulated_clips(fused: bool) -> None:
    """The loss and gradients of one batch of B clips are the mean of the B single-clip ones, with the
    CE over B * rho: on materialised logits and on the fused path (hidden states and lm_head)."""
    objective = build("forward_kl", labelled_share=RHO)
    batch, hidden, head = _batch(seed=5)

    def run(h: torch.Tensor, b: DistillBatch) -> torch.Tensor:
        if fused:
            b.student_logits, b.student_hidden, b.student_lm_head = None, h, head
        else:
            b.student_logits = h @ head.T
        return objective(b).total

    h = hidden.clone().requires_grad_(True)
    whole = run(h, batch)
    whole.backward()
    singles = hidden.clone().requires_grad_(True)
    acc = sum(run(singles[b:b + 1], _single_clip(batch, b)) / B for b in range(B))
    acc.backward()
    assert float(whole.detach()) == pytest.approx(float(acc.detach()), rel=1e-12)
    torch.testing.assert_close(h.grad, singles.grad, rtol=1e-10, atol=1e-12)
    assert float(objective(batch).terms["ce"]) == pytest.approx(_reference(_batch(seed=5)[0], RHO), rel=1e-10)
