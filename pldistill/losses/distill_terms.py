"""The audio-LLM student's loss terms and the objectives built from them (paper eq. 4-8 and the
Table 1 baselines), each registered next to its definition (:mod:`.objectives` holds the registry).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .ce import cross_entropy
from .cka import awcka
from .contrastive import contrastive_hidden, contrastive_logits
from .kl import kl_divergence, kl_divergence_from_hidden
from .objectives import _KL_REDUCTION, DistillBatch, TermOptions, register_objective, register_term
from .relation import relation_distance

__all__: list[str] = []  # everything here is reached through the registry (TERMS, OBJECTIVES)


@register_term("ce", label="CE")
def _ce(batch: DistillBatch, opts: TermOptions) -> Tensor:
    """Eq. 7: cross-entropy of the student's response logits against the labels, summed over each
    sample's response tokens (``ce_reduction: mean``: averaged), then averaged over the samples, so
    that a batch of B clips equals B accumulated batches of one. In fp32 on the response rows only.
    Unlabelled clips (``ce_mask``) add 0 and still count in B, so the exactness holds for them too; the
    mean over B is divided by ``opts.ce_share`` (rho), so the labelled clips' sum is over B * rho,
    their expected number, and CE keeps its weight in eq. 8 under a labelled fraction."""
    mask = batch.response_mask if batch.ce_mask is None else batch.ce_mask
    return cross_entropy(batch.student_logits, batch.labels, mask,
                         reduction="sample_sum" if opts.ce_reduction == "sum" else "sample_mean",
                         share=opts.ce_share)


@register_term("cka", label="PDist", inputs=("teacher_audio", "student_audio", "audio_weights"), logits=False)
def _cka(batch: DistillBatch, opts: TermOptions) -> Tensor:
    """Eq. 4: ``1 - AwCKA(teacher_audio, student_audio, audio_weights)``, mean over the batch."""
    assert batch.teacher_audio is not None and batch.student_audio is not None
    assert batch.audio_weights is not None
    sim = awcka(
        batch.teacher_audio.detach(),
        batch.student_audio,
        batch.audio_weights.detach(),
        batch.audio_token_mask,
        estimator=opts.cka_estimator,
    )
    return 1.0 - sim.mean()




def _kl(name: str, label: str, mask_field: str, direction: str, doc: str) -> None:
    def term(batch: DistillBatch, opts: TermOptions) -> Tensor:
        if batch.teacher_logits is None and batch.teacher_hidden is not None:
            assert batch.teacher_lm_head is not None
            return kl_divergence_from_hidden(batch.teacher_hidden, batch.teacher_lm_head, batch.student_logits,
                                             getattr(batch, mask_field), temperature=opts.temperature,
                                             direction=direction, chunk_size=opts.kl_chunk_size,
                                             reduction=_KL_REDUCTION)
        assert batch.teacher_logits is not None
        return kl_divergence(
            batch.teacher_logits,
            batch.student_logits,
            getattr(batch, mask_field),
            temperature=opts.temperature,
            direction=direction,
            chunk_size=opts.kl_chunk_size,
            reduction=_KL_REDUCTION,
        )

    term.__doc__ = doc
    register_term(name, label=label, inputs=("teacher_logits",), kl=True)(term)


_kl("kl_audio", "KL(audio)", "audio_mask", "forward",
    "Eq. 5: KL(P_T || P_S) at temperature t over the audio positions.")
_kl("kl_response", "KL(response)", "response_mask", "forward",
    "Eq. 6: KL(P_T || P_S) at temperature t over the response positions.")
_kl("rkl_response", "Reverse KL(response)", "response_mask", "reverse",
    "Reverse KL(P_S || P_T) over the response positions (the 'Reverse KL' baseline).")


def _audio_rows(x: Tensor, audio_mask: Tensor) -> tuple[Tensor, Tensor]:
    """``(B, L, D)`` rows at the audio positions, in sequence order, zero-padded: ``(B, La, D)`` and
    the ``(B, La)`` valid mask."""
    counts = audio_mask.sum(-1)
    la = int(counts.max()) if counts.numel() else 0
    # A stable sort of "not audio" puts the audio positions first, in their original order.
    order = torch.argsort((~audio_mask).to(torch.int8), dim=-1, stable=True)[:, :la]
    valid = torch.arange(la, device=audio_mask.device) < counts.unsqueeze(-1)
    rows = x.gather(1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return torch.where(valid.unsqueeze(-1), rows, 0.0), valid


@register_term("relation", label="Relation", inputs=("teacher_logits",))
def _relation(batch: DistillBatch, opts: TermOptions) -> Tensor:
    """LLaVA-KD's relation distillation (RDist) as the paper's baseline has it: on the teacher's and
    the student's *output logits at the audio positions* (each row L2-normalised, their
    self-correlation compared by 1 - cosine; :func:`.relation_distance`). LLaVA-KD is a logit-level
    method: that it never looks at the projector is the point PL-Distill makes against it. From
    cached hidden states the teacher's audio logits are rebuilt at the audio rows only."""
    student, valid = _audio_rows(batch.student_logits, batch.audio_mask)
    if batch.teacher_logits is not None:
        teacher, _ = _audio_rows(batch.teacher_logits, batch.audio_mask)
    else:
        assert batch.teacher_hidden is not None and batch.teacher_lm_head is not None
        hidden, _ = _audio_rows(batch.teacher_hidden, batch.audio_mask)
        teacher = hidden.to(batch.teacher_lm_head.dtype) @ batch.teacher_lm_head.T
    return relation_distance(teacher.detach(), student, valid).mean()


@register_term("relation_projector", label="Relation (projector)", inputs=("teacher_audio", "student_audio"),
               logits=False)
def _relation_projector(batch: DistillBatch, opts: TermOptions) -> Tensor:
    """The relation term on the projector outputs instead of the logits: an ablation
    (``llava_kd_projector``), not LLaVA-KD as published; see :func:`.relation_distance`."""
    assert batch.teacher_audio is not None and batch.student_audio is not None
    return relation_distance(batch.teacher_audio.detach(), batch.student_audio, batch.audio_token_mask).mean()


@register_term("kl_response_cd", label="KL(response, contrastive)", kl=True,
               inputs=("teacher_logits", "teacher_text_logits"), hparams=("caad_contrast",))
def _kl_response_cd(batch: DistillBatch, opts: TermOptions) -> Tensor:
    """CAAD: ``KL(softmax(z_cd / t) || softmax(z_S / t))`` over the response positions, with the
    contrastive teacher ``z_cd = (1 + a) z_audio - a z_text`` (:mod:`.contrastive`). From the cache
    the mix is taken of the two paths' hidden states, which gives the same logits exactly."""
    a = opts.caad_contrast
    assert a is not None, "kl_response_cd needs TermOptions.caad_contrast"
    t, chunk = opts.temperature, opts.kl_chunk_size
    if batch.teacher_logits is None and batch.teacher_hidden is not None:
        assert batch.teacher_text_hidden is not None and batch.teacher_lm_head is not None
        mixed = contrastive_hidden(batch.teacher_hidden.detach(), batch.teacher_text_hidden.detach(), a)
        return kl_divergence_from_hidden(mixed, batch.teacher_lm_head, batch.student_logits, batch.response_mask,
                                         temperature=t, chunk_size=chunk, reduction=_KL_REDUCTION)
    assert batch.teacher_logits is not None and batch.teacher_text_logits is not None
    mixed = contrastive_logits(batch.teacher_logits.detach(), batch.teacher_text_logits.detach(), a)
    return kl_divergence(mixed, batch.student_logits, batch.response_mask, temperature=t, chunk_size=chunk,
                         reduction=_KL_REDUCTION)


# The paper's Table 1 methods and Table 2's LDist, in the paper's order (reports keep it).
register_objective("sft", label="SFT", ce=None)
register_objective("forward_kl", label="Forward KL", ce=None, kl_response="gamma")
register_objective("reverse_kl", label="Reverse KL", ce=None, rkl_response="gamma")
register_objective("llava_kd", label="LLaVA-KD", ce=None, kl_response="gamma", kl_audio="beta",
                   relation="llava_kd_relation")
register_objective("ldist", label="LDist", ce=None, kl_audio="beta", kl_response="gamma")
register_objective("pl_distill", label="PL-Distill", ce=None, cka="alpha", kl_audio="beta",
                   kl_response="gamma")  # eq. 8
# Ablation: LLaVA-KD with its relation term moved onto the projector outputs.
register_objective("llava_kd_projector", label="LLaVA-KD (projector relation)", ce=None, kl_response="gamma",
                   kl_audio="beta", relation_projector="llava_kd_relation")
# CAAD: CE + gamma KL(z_cd) on the response, both teacher paths forced on one pseudo target (Stage 1).
# The audio-logit KL is PL-Distill's L_DA, not CAAD's: an explicit option, off unless beta is set.
register_objective("caad", label="CAAD", ce=None, kl_response_cd="gamma", kl_audio="beta",
                   defaults={"beta": 0.0}, pseudo_target=True)
