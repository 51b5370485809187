"""The step's fused path (student lm_head + logit terms per chunk, logits never materialised) gives
today's figures: every term, the total and every student gradient, for every objective, cached and
online, chunked or not; it is taken exactly when the objective allows it."""

from __future__ import annotations

import pytest
from _objectives import audiolm_objectives
from _objectives import objective as build
from _steps import assert_same_step, step_and_grads

from pldistill.losses import objectives
from pldistill.models.audiolm import AudioLMHead
from pldistill.models.inputs import collate
from pldistill.train.step import DistillModels

LABELS = ("Neutral", "Happy", "Angry", "Sad")
CLIPS = (4, 0, 7, 2)
HPARAMS = dict(alpha=0.7, beta=0.8, gamma=1.1, temperature=2.0, llava_kd_relation=0.5, caad_contrast=0.5)


@pytest.fixture
def fused_calls(monkeypatch):
    """How many times the objective took the fused path."""
    calls = []
    real = objectives.fused_logit_terms
    monkeypatch.setattr(objectives, "fused_logit_terms", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def _models(tiny_distill, mode: str, fused: bool, obj) -> DistillModels:
    teacher, head, _, cache = tiny_distill
    common = dict(student=head, vocab=len(teacher.tokenizer), objective=obj, weighting="attention_last",
                  fused_logits=fused)
    if mode == "cached":
        return DistillModels(audio_tower=None, teacher=None, cache=cache, **common)
    return DistillModels(audio_tower=teacher.audio_tower, teacher=AudioLMHead(teacher.model), **common)






@pytest.mark.parametrize("mode", ["cached", "online"])
@pytest.mark.parametrize("name", audiolm_objectives())
@pytest.mark.parametrize("chunk", [None, 7])
def test_fused_step_equals_todays_step(tiny_distill, fused_calls, mode, name, chunk):
    teacher, head, data, _ = tiny_distill
    obj = build(name, kl_chunk_size=chunk, **HPARAMS)
    batch = collate([data.train[i] for i in CLIPS], teacher.tokenizer, LABELS)
    today, g_today = step_and_grads(_models(tiny_distill, mode, False, obj), head, batch)
    assert not fused_calls
    fused, g_fused = step_and_grads(_models(tiny_distill, mode, True, obj), head, batch)
    assert len(fused_calls) == (1 if obj.fusable else 0) and obj.fusable == (name != "llava_kd")
    assert_same_step(fused, g_fused, today, g_today)


def test_a_trainable_lm_head_gets_todays_gradient(tiny_distill, fused_calls):
    """An unwrapped student whose head trains too: the fused path recomputes the logits in the backward
    pass and gives the head its gradient."""
    teacher, head, data, _ = tiny_distill
    weight = head.model.lm_head.weight
    obj = build("pl_distill", kl_chunk_size=5, **HPARAMS)
    batch = collate([data.train[i] for i in CLIPS], teacher.tokenizer, LABELS)
    weight.requires_grad_(True)
    try:
        today, g_today = step_and_grads(_models(tiny_distill, "cached", False, obj), head, batch)
        fused, g_fused = step_and_grads(_models(tiny_distill, "cached", True, obj), head, batch)
    finally:
        weight.requires_grad_(False)
        weight.grad = None
    head_name = next(n for n, p in head.named_parameters() if p is weight)  # maybe the tied embedding's name
    assert fused_calls and head_name in g_fused
    assert_same_step(fused, g_fused, today, g_today)
