"""An objective on the student's hidden states and lm_head (the fused path) equals the same objective on
its materialised logits: every term, the total and the gradients of the hidden states (and of a
trainable head), for every fusable objective, teacher as logits or as hidden states, chunked or not."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from _objectives import audiolm_objectives, objective

from pldistill.losses import OBJECTIVES, TERMS, DistillBatch
from pldistill.losses.fused_objective import FUSABLE_TERMS

HS, HT = 6, 5
F64, F32 = torch.float64, torch.float32
TOL = {F64: dict(rtol=1e-10, atol=1e-10), F32: dict(rtol=1e-5, atol=1e-5)}
HPARAMS = dict(alpha=0.7, beta=0.8, gamma=1.1, temperature=2.0, llava_kd_relation=0.5, caad_contrast=0.5)
FUSABLE = [o for o in audiolm_objectives() if objective(o, **HPARAMS).fusable]


def _pair(make_batch, dtype: torch.dtype, teacher: str, head_grad: bool = False, seed: int = 7
          ) -> tuple[DistillBatch, DistillBatch, torch.Tensor, torch.Tensor]:
    """The same batch twice: with the student's logits ``hidden @ W.T`` materialised, and with
    ``hidden`` and ``W`` instead; the teacher as logits, or as hidden states and its own head."""
    base = make_batch(seed, dtype=F64)
    b, length, v = base.student_logits.shape
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, length, HS, generator=g, dtype=F64).to(dtype).requires_grad_(True)
    weight = (0.8 * torch.randn(v, HS, generator=g, dtype=F64)).to(dtype).requires_grad_(head_grad)
    t_hidden = torch.randn(b, length, HT, generator=g, dtype=F64).to(dtype)
    t_text = (t_hidden + 0.5 * torch.randn(b, length, HT, generator=g, dtype=F64)).to(dtype)
    t_weight = (0.8 * torch.randn(v, HT, generator=g, dtype=F64)).to(dtype)
    common = dict(labels=base.labels, response_mask=base.response_mask, audio_mask=base.audio_mask,
                  student_audio=base.student_audio.to(dtype).requires_grad_(True),
                  teacher_audio=base.teacher_audio.to(dtype), audio_token_mask=base.audio_token_mask,
                  audio_weights=base.audio_weights.to(dtype))
    if teacher == "logits":
        common.update(teacher_logits=F.linear(t_hidden, t_weight), teacher_text_logits=F.linear(t_text, t_weight))
    else:
        common.update(teacher_hidden=t_hidden, teacher_text_hidden=t_text, teacher_lm_head=t_weight)
    materialised = DistillBatch(student_logits=F.linear(hidden, weight), **common)
    fused = DistillBatch(student_logits=None, student_hidden=hidden, student_lm_head=weight, **common)
    return materialised, fused, hidden, weight


def _run(obj, batch: DistillBatch, leaves: list[torch.Tensor]):
    for x in leaves:
        x.grad = None
    out = obj(batch)
    out.total.backward()
    return out, [None if x.grad is None else x.grad.clone() for x in leaves]


def test_which_objectives_are_fusable() -> None:
    """Every objective but LLaVA-KD (its relation term reads the student's logits at every audio row)."""
    assert set(audiolm_objectives()) - set(FUSABLE) == {"llava_kd"}
    assert {t for t in TERMS if TERMS[t].logits and TERMS[t].family == "audiolm"} - FUSABLE_TERMS == {"relation"}


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("name", FUSABLE)
@pytest.mark.parametrize("teacher", ["logits", "hidden"])
@pytest.mark.parametrize("chunk", [None, 3])
@pytest.mark.parametrize("head_grad", [False, True])
def test_fused_objective_equals_materialised_logits(make_batch, dtype, name, teacher, chunk, head_grad) -> None:
    obj = objective(name, kl_chunk_size=chunk, **HPARAMS)
    materialised, fused, hidden, weight = _pair(make_batch, dtype, teacher, head_grad)
    leaves = [hidden, weight, fused.student_audio] if head_grad else [hidden, fused.student_audio]
    out_m, g_m = _run(obj, materialised, leaves)
    out_f, g_f = _run(obj, fused, leaves)
    assert list(out_f.terms) == list(out_m.terms) == list(OBJECTIVES[name].weights)
    for k in out_m.terms:
        torch.testing.assert_close(out_f.terms[k], out_m.terms[k], **TOL[dtype], msg=k)
    torch.testing.assert_close(out_f.total, out_m.total, **TOL[dtype])
    for a, b in zip(g_f, g_m):
        if b is None:  # the student's projector rows, in an objective without cka / relation_projector
            assert a is None
        else:
            torch.testing.assert_close(a, b, **TOL[dtype])


def test_zero_weight_term_is_logged_without_gradient_and_cannot_poison_the_total(make_batch) -> None:
    """beta = 0: kl_audio is computed and logged, but a NaN in the teacher at the audio rows reaches
    neither the total nor the gradient (the ablated term runs without gradient)."""
    obj = objective("ldist", **{**HPARAMS, "beta": 0.0})
    reference = objective("forward_kl", **HPARAMS)  # ce + gamma kl_response: ldist without kl_audio
    materialised, fused, hidden, _ = _pair(make_batch, F64, "logits")
    poisoned = dataclasses.replace(fused, teacher_logits=fused.teacher_logits.clone())
    poisoned.teacher_logits[poisoned.audio_mask] = float("nan")
    out, (g,) = _run(obj, poisoned, [hidden])
    ref, (g_ref,) = _run(reference, materialised, [hidden])
    assert torch.isnan(out.terms["kl_audio"]) and out.terms["kl_audio"].grad_fn is None
    torch.testing.assert_close(out.total, ref.total, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)


def test_a_batch_without_logits_needs_the_hidden_states_and_a_fusable_objective(make_batch) -> None:
    _, fused, _, _ = _pair(make_batch, F64, "logits")
    with pytest.raises(ValueError, match="student_hidden"):
        objective("llava_kd", **HPARAMS)(fused)
    with pytest.raises(ValueError, match="student_hidden"):
        objective("ldist", **HPARAMS)(dataclasses.replace(fused, student_lm_head=None))


def test_sft_needs_no_teacher_on_the_fused_path(make_batch) -> None:
    materialised, fused, hidden, _ = _pair(make_batch, F64, "logits")
    bare = dataclasses.replace(fused, teacher_logits=None, teacher_text_logits=None)
    obj = objective("sft", **HPARAMS)
    out_m, g_m = _run(obj, materialised, [hidden])
    out_f, g_f = _run(obj, bare, [hidden])
    torch.testing.assert_close(out_f.total, out_m.total, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_f[0], g_m[0], rtol=1e-12, atol=1e-12)
