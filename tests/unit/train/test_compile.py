"""``train.compile``: the student's step under ``torch.compile`` (inductor, on CPU here) gives the eager
figures (every term, the total, every student gradient) over consecutive steps; a student that fails
to compile runs eagerly with one warning.

Cost: inductor compiles the student's forward and backward once per shape, about a minute of CPU on
the tiny models, so the compiled test runs two steps of one shape (what bucketing makes the common
case); the eager-fallback test needs no compiler."""

from __future__ import annotations

import warnings

import pytest
import torch
from _objectives import objective as build
from _steps import assert_same_step

from pldistill.models.inputs import collate
from pldistill.train.step import DistillModels, compile_student, distill_step

LABELS = ("Neutral", "Happy", "Angry", "Sad")
#: fp32; inductor fuses and reorders reductions, so not bit-equal
TOL = dict(rtol=1e-4, atol=1e-5)
BATCHES = ((4, 0), (7, 2), (1, 3, 5))


def _steps(models: DistillModels, head, batches):
    out = []
    for batch in batches:
        head.zero_grad(set_to_none=True)
        res = distill_step(models, batch)
        res.total.backward()
        out.append((res, {n: p.grad.clone() for n, p in head.named_parameters() if p.grad is not None}))
    return out


def _models(tiny_distill, student, fused: bool) -> DistillModels:
    teacher, _, _, cache = tiny_distill
    obj = build("pl_distill", alpha=0.7, beta=0.8, gamma=1.1, temperature=2.0, kl_chunk_size=7)
    return DistillModels(audio_tower=None, teacher=None, cache=cache, student=student, vocab=len(teacher.tokenizer),
                         objective=obj, weighting="attention_last", fused_logits=fused)


@pytest.mark.slow  # about 40 s of CPU for inductor with a cold cache (its cache makes reruns quick)
def test_compiled_step_gives_the_eager_figures(tiny_distill):
    teacher, head, data, _ = tiny_distill
    batch = collate([data.train[i] for i in BATCHES[0]], teacher.tokenizer, LABELS)
    batches, fused = [batch, batch], True
    torch._dynamo.reset()
    eager = _steps(_models(tiny_distill, head, fused), head, batches)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager would pass for the wrong reason
        compiled = _steps(_models(tiny_distill, compile_student(head, "default"), fused), head, batches)
    for (e, ge), (c, gc) in zip(eager, compiled):
        assert_same_step(c, gc, e, ge, TOL)


def test_a_student_that_fails_to_compile_runs_eagerly(tiny_distill, monkeypatch):
    teacher, head, data, _ = tiny_distill

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", lambda module, **kw: broken)
    student = compile_student(head, "reduce-overhead")
    batches = [collate([data.train[i] for i in b], teacher.tokenizer, LABELS) for b in BATCHES[:2]]
    eager = _steps(_models(tiny_distill, head, True), head, batches)
    with pytest.warns(RuntimeWarning, match="no compiler here") as caught:
        fallback = _steps(_models(tiny_distill, student, True), head, batches)
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1  # once, then eager for good
    for (e, ge), (c, gc) in zip(eager, fallback):
        assert torch.equal(c.total, e.total) and all(torch.equal(gc[k], ge[k]) for k in ge)


def test_off_is_the_student_itself_and_unknown_modes_fail(tiny_distill):
    head = tiny_distill[1]
    assert compile_student(head, "off") is head
    with pytest.raises(ValueError, match="reduce-overhead"):
        compile_student(head, "fastest")
