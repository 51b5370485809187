"""CAAD's contrastive teacher and its response KL: NumPy reference, hidden-state form, a = 0, bad a."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _objectives import objective as build

from pldistill.losses import TERMS, DistillBatch, contrastive_hidden, contrastive_logits

MakeBatch = Callable[..., DistillBatch]


def _np_log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def _np_contrastive_kl(z_audio: np.ndarray, z_text: np.ndarray, z_student: np.ndarray, mask: np.ndarray,
                       a: float, t: float) -> float:
    """Independent float64 reference: KL(softmax(z_cd/t) || softmax(z_S/t)) averaged over each sample's
    masked positions, then over the samples (the objective's per-sample reduction)."""
    per_sample = []
    for b in range(len(mask)):
        m = mask[b]
        z_cd = (1.0 + a) * z_audio[b][m] - a * z_text[b][m]
        log_p, log_q = _np_log_softmax(z_cd / t), _np_log_softmax(z_student[b][m] / t)
        per_sample.append((np.exp(log_p) * (log_p - log_q)).sum(-1).mean())
    return float(np.mean(per_sample))


@pytest.mark.parametrize("a", [0.0, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("t", [1.0, 2.0])
@pytest.mark.parametrize("chunk", [None, 1])
def test_term_matches_numpy_reference(make_batch: MakeBatch, a: float, t: float, chunk: int | None) -> None:
    batch = make_batch()
    opts = build("caad", caad_contrast=a, temperature=t, kl_chunk_size=chunk).options
    got = TERMS["kl_response_cd"].fn(batch, opts)
    assert batch.teacher_logits is not None and batch.teacher_text_logits is not None
    expected = _np_contrastive_kl(batch.teacher_logits.numpy(), batch.teacher_text_logits.numpy(),
                                  batch.student_logits.detach().numpy(), batch.response_mask.numpy(), a, t)
    assert float(got) == pytest.approx(expected, rel=1e-10)


def test_contrastive_logits_formula() -> None:
    rng = np.random.default_rng(0)
    za, zt = rng.normal(size=(3, 5, 7)), rng.normal(size=(3, 5, 7))
    got = contrastive_logits(torch.from_numpy(za), torch.from_numpy(zt), 1.7)
    np.testing.assert_allclose(got.numpy(), 2.7 * za - 1.7 * zt, rtol=1e-13)
    # bfloat16 teachers are mixed in float32: the contrast lives in small differences
    assert contrastive_logits(torch.from_numpy(za).bfloat16(), torch.from_numpy(zt).bfloat16(), 1.0).dtype == \
        torch.float32


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("a", [0.0, 0.5, 2.0])
def test_hidden_form_equals_logit_form(a: float, bias: bool) -> None:
    """Why the cache is exact: the weights (1 + a) and -a sum to 1, so the mix commutes with lm_head
    (with or without a bias; Qwen2's has none)."""
    g = torch.Generator().manual_seed(3)
    h_audio, h_text = torch.randn(2, 6, 9, generator=g, dtype=torch.float64), \
        torch.randn(2, 6, 9, generator=g, dtype=torch.float64)
    w = torch.randn(13, 9, generator=g, dtype=torch.float64)
    b = torch.randn(13, generator=g, dtype=torch.float64) if bias else None
    via_hidden = F.linear(contrastive_hidden(h_audio, h_text, a), w, b)
    via_logits = contrastive_logits(F.linear(h_audio, w, b), F.linear(h_text, w, b), a)
    torch.testing.assert_close(via_hidden, via_logits, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("a", [0.0, 0.8, 2.0])
@pytest.mark.parametrize("chunk", [None, 2])
def test_objective_from_hidden_states_equals_from_logits(a: float, chunk: int | None) -> None:
    """The whole caad objective (both KL terms) with the teacher given as hidden states plus lm_head,
    as the cached path gives it, equals the one with logits: value and student gradient."""
    g = torch.Generator().manual_seed(5)
    bsz, length, hidden, vocab = 2, 9, 6, 11
    h_audio = torch.randn(bsz, length, hidden, generator=g, dtype=torch.float64)
    h_text = torch.randn(bsz, length, hidden, generator=g, dtype=torch.float64)
    w = torch.randn(vocab, hidden, generator=g, dtype=torch.float64)
    audio = torch.zeros(bsz, length, dtype=torch.bool)
    audio[:, 1:4] = True
    response = torch.zeros(bsz, length, dtype=torch.bool)
    response[0, 6:8], response[1, 5:8] = True, True
    labels = torch.full((bsz, length), -100)
    labels[response] = torch.randint(0, vocab, (int(response.sum()),), generator=g)
    student = torch.randn(bsz, length, vocab, generator=g, dtype=torch.float64)
    # the text path holds values only at the response positions (as the step puts them there)
    h_text = torch.where(response[..., None], h_text, torch.zeros_like(h_text))
    obj = build("caad", caad_contrast=a, beta=0.6, kl_chunk_size=chunk)
    outs, grads = [], []
    for teacher in ({"teacher_logits": F.linear(h_audio, w), "teacher_text_logits": F.linear(h_text, w)},
                    {"teacher_hidden": h_audio, "teacher_text_hidden": h_text, "teacher_lm_head": w}):
        z = student.clone().requires_grad_(True)
        out = obj(DistillBatch(student_logits=z, labels=labels, response_mask=response, audio_mask=audio, **teacher))
        out.total.backward()
        outs.append(out)
        grads.append(z.grad)
    assert set(outs[0].terms) == set(outs[1].terms) == {"ce", "kl_response_cd", "kl_audio"}
    for name in outs[0].terms:
        torch.testing.assert_close(outs[1].terms[name], outs[0].terms[name], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk", [None, 3])
def test_a_zero_is_forward_kl(make_batch: MakeBatch, chunk: int | None) -> None:
    """a = 0 (and beta = 0) is exactly forward_kl: same terms, total and student gradient."""
    outs, grads = [], []
    for name, extra in (("forward_kl", {}), ("caad", {"caad_contrast": 0.0, "beta": 0.0})):
        batch = make_batch(requires_grad=True)
        out = build(name, gamma=1.3, kl_chunk_size=chunk, **extra)(batch)
        out.total.backward()
        outs.append(out)
        grads.append(batch.student_logits.grad)
    fkl, caad = outs
    assert torch.equal(caad.terms["kl_response_cd"], fkl.terms["kl_response"])
    assert torch.equal(caad.terms["ce"], fkl.terms["ce"])
    assert torch.equal(caad.total, fkl.total)
    assert torch.equal(grads[1], grads[0])


def test_text_path_equal_to_audio_path_leaves_forward_kl(make_batch: MakeBatch) -> None:
    """Property: a teacher that ignores the audio has nothing to contrast, whatever a."""
    batch = make_batch()
    batch = dataclasses.replace(batch, teacher_text_logits=batch.teacher_logits)
    plain = TERMS["kl_response"].fn(batch, build("forward_kl").options)
    for a in (0.5, 4.0):
        torch.testing.assert_close(TERMS["kl_response_cd"].fn(batch, build("caad", caad_contrast=a).options),
                                   plain, rtol=1e-12, atol=1e-12)


def test_contrast_moves_the_teacher_away_from_the_text_path(make_batch: MakeBatch) -> None:
    """A larger a puts less teacher probability where the text-only path is confident."""
    batch = make_batch()
    assert batch.teacher_logits is not None and batch.teacher_text_logits is not None
    rows = batch.response_mask
    text_top = batch.teacher_text_logits[rows].argmax(-1, keepdim=True)
    mass = [contrastive_logits(batch.teacher_logits[rows], batch.teacher_text_logits[rows], a).softmax(-1)
            .gather(-1, text_top).mean() for a in (0.0, 1.0, 3.0)]
    assert mass[0] > mass[1] > mass[2]


def test_caad_reads_the_text_path_and_names_it_when_missing(make_batch: MakeBatch) -> None:
    caad = build("caad")
    assert caad.needs_text_teacher and caad.needs_teacher and not caad.needs_audio
    # beta is 0 for caad unless set (issue 25: the audio-logit KL is PL-Distill's, not CAAD's)
    assert caad.weights == {"ce": 1.0, "kl_response_cd": 1.0, "kl_audio": 0.0}
    assert caad.options.caad_contrast == 1.0  # the Hyperparameters default
    assert not build("forward_kl").needs_text_teacher and build("forward_kl").options.caad_contrast is None
    # adding the term to another objective brings its option with it
    assert build("ldist", term_weights={"kl_response_cd": 0.5}).options.caad_contrast == 1.0
    with pytest.raises(ValueError, match="teacher_text_logits"):
        caad(dataclasses.replace(make_batch(), teacher_text_logits=None))


@pytest.mark.parametrize("bad", [-0.5, math.nan, math.inf, -math.inf])
def test_bad_contrast_is_refused(bad: float) -> None:
    from pydantic import ValidationError

    from pldistill.config import Hyperparameters

    with pytest.raises(ValueError, match="caad_contrast must be a finite number >= 0"):
        build("caad", caad_contrast=bad)
    with pytest.raises(ValueError, match="caad_contrast must be a finite number >= 0"):
        contrastive_logits(torch.zeros(2), torch.zeros(2), bad)
    with pytest.raises(ValidationError, match="caad_contrast"):
        Hyperparameters(caad_contrast=bad)
