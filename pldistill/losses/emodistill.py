"""EmoDistill's loss terms: class-logit KD from two teachers and embedding-level cosine KD.

EmoDistill (Shome & Etemad, arXiv 2309.04849; ``../shared/papers/emodistill-summary.txt``) trains a
speech classifier with two frozen teachers, a prosodic one (eGeMAPS functionals) and a linguistic
one (BERT on the transcript). Each teacher supervises the student twice:

- at the logit level, a temperature-scaled ``KL(softmax(z_T/tau) || softmax(z_S/tau))`` against the
  student's class logits, with a teacher-specific temperature (paper: ``tau_P = 0.5``,
  ``tau_L = 4``);
- at the embedding level, ``1 - cos`` between the student's head of that teacher's kind (linguistic
  or prosodic projection) and the teacher's embedding.

Objective (issue "EmoDistill in the sweeper")::

    L = CE + w_p KL_P + w_l KL_L + w_cos (cos_P + cos_L)

**No ``tau**2`` factor.** The paper summary describes plain temperature-scaled KL and explains the
asymmetric temperatures by the *strength* of the signal: the prosodic teacher's hard logits
(``tau = 0.5``) give a strong gradient, the linguistic teacher's soft ones (``tau = 4``) a gentle
one. Hinton's ``tau**2`` would cancel exactly that difference, so it is not applied here (as in
:func:`pldistill.losses.kl_divergence`); an objective that wants it scales the term's weight (as
``build_objective(kl_t2_scaling=True)`` does) and logs the unscaled term.

All functions are pure: tensors in, scalar out; teacher sides are detached. The learned linear map
of a student head to its teacher's width (:class:`EmbeddingMap`) is a module whose parameters the
caller trains with the student; the cosine loss takes its *output*.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .objectives import ClassifierBatch, TermOptions, register_objective, register_term

__all__ = [
    "EMODISTILL_TERMS",
    "EmbeddingMap",
    "class_kl",
    "cosine_embedding_loss",
    "emodistill_terms",
    "emodistill_weights",
    "emodistill_total",
]

#: The unweighted terms :func:`emodistill_terms` returns, in a fixed order (for logging).
EMODISTILL_TERMS = ("ce", "kl_prosodic", "kl_linguistic", "cos_prosodic", "cos_linguistic")


def _float_dtype(*tensors: Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def class_kl(teacher_logits: Tensor, student_logits: Tensor, *, temperature: float) -> Tensor:
    """Mean over samples of ``KL(softmax(z_T / t) || softmax(z_S / t))`` over the classes.

    ``KL_i = sum_c P_T(c) (log P_T(c) - log P_S(c))`` with ``P = softmax(z / t)``; the result is
    ``mean_i KL_i``. No ``t**2`` factor (module docstring). Computed in float32 (float64 if an input
    is float64); the teacher side is detached.

    Args:
        teacher_logits: ``(B, C)``.
        student_logits: ``(B, C)``.
        temperature: ``t > 0``, shared by both sides.

    Returns:
        A scalar >= 0; 0 when the two are equal up to a per-row constant.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if teacher_logits.dim() != 2 or teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher and student logits must both be (B, C), got {tuple(teacher_logits.shape)} "
                         f"and {tuple(student_logits.shape)}")
    dtype = _float_dtype(teacher_logits, student_logits)
    log_t = F.log_softmax(teacher_logits.detach().to(dtype) / temperature, dim=-1)
    log_s = F.log_softmax(student_logits.to(dtype) / temperature, dim=-1)
    return (log_t.exp() * (log_t - log_s)).sum(-1).mean()


def cosine_embedding_loss(student_emb: Tensor, teacher_emb: Tensor, *, eps: float = 1e-8) -> Tensor:
    """Mean over samples of ``1 - cos(e_S, e_T)``.

    ``cos(a, b) = a.b / max(|a| |b|, eps)`` (``torch.nn.functional.cosine_similarity``), so a zero
    vector counts as orthogonal (loss 1) rather than NaN. Range ``[0, 2]``; invariant to a positive
    scaling of either side. The teacher side is detached.

    Args:
        student_emb: ``(B, E)``, the student head already mapped to the teacher's width
            (:class:`EmbeddingMap`).
        teacher_emb: ``(B, E)``.
    """
    if student_emb.dim() != 2 or student_emb.shape != teacher_emb.shape:
        raise ValueError(f"student and teacher embeddings must both be (B, E), got {tuple(student_emb.shape)} "
                         f"and {tuple(teacher_emb.shape)} (map the student head to the teacher's width)")
    dtype = _float_dtype(student_emb, teacher_emb)
    cos = F.cosine_similarity(student_emb.to(dtype), teacher_emb.detach().to(dtype), dim=-1, eps=eps)
    return (1.0 - cos).mean()


class EmbeddingMap(nn.Module):
    """The learned map of one student head ``(B, E_s)`` to its teacher's width ``(B, E_t)``.

    ``nn.Identity`` when the widths agree (nothing to learn), else ``nn.Linear(E_s, E_t, bias=False)``.
    No bias: a bias alone could point every sample at the teacher's mean direction and lower the
    cosine loss without the head encoding anything per sample. Its parameters belong to the student
    (optimised and checkpointed with it) and are dropped at export: inference never uses them.
    """

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        if student_dim < 1 or teacher_dim < 1:
            raise ValueError(f"widths must be positive, got {student_dim} -> {teacher_dim}")
        self.student_dim, self.teacher_dim = student_dim, teacher_dim
        self.map: nn.Module = (nn.Identity() if student_dim == teacher_dim
                               else nn.Linear(student_dim, teacher_dim, bias=False))

    def forward(self, emb: Tensor) -> Tensor:
        """``(B, E_s) -> (B, E_t)``."""
        return self.map(emb)


def emodistill_terms(
    student_logits: Tensor,
    ling_emb_mapped: Tensor,
    pros_emb_mapped: Tensor,
    labels: Tensor,
    teacher_p_logits: Tensor,
    teacher_l_logits: Tensor,
    teacher_p_emb: Tensor,
    teacher_l_emb: Tensor,
    *,
    tau_p: float = 0.5,
    tau_l: float = 4.0,
) -> dict[str, Tensor]:
    """The unweighted EmoDistill terms of one batch, named as :data:`EMODISTILL_TERMS`.

    - ``ce``: cross-entropy of ``student_logits`` against ``labels``, mean over the batch;
    - ``kl_prosodic`` / ``kl_linguistic``: :func:`class_kl` at ``tau_p`` / ``tau_l``;
    - ``cos_prosodic`` / ``cos_linguistic``: :func:`cosine_embedding_loss` of each student head
      (mapped) against its own teacher's embedding.

    Two cosine terms, not one: the paper's disjoint heads exist so that each teacher supervises only
    its own pathway, and a single-teacher ablation must be able to drop one teacher's embedding
    term with its logit term (:func:`emodistill_weights`). Both share the one weight ``w_cos``.

    Shapes: logits ``(B, C)``, labels ``(B,)`` long, ``ling_emb_mapped`` / ``teacher_l_emb``
    ``(B, E_l)``, ``pros_emb_mapped`` / ``teacher_p_emb`` ``(B, E_p)``. Teacher inputs are detached.
    """
    if labels.shape != student_logits.shape[:1]:
        raise ValueError(f"labels must be (B,) = ({student_logits.shape[0]},), got {tuple(labels.shape)}")
    dtype = _float_dtype(student_logits)
    return {
        "ce": F.cross_entropy(student_logits.to(dtype), labels),
        "kl_prosodic": class_kl(teacher_p_logits, student_logits, temperature=tau_p),
        "kl_linguistic": class_kl(teacher_l_logits, student_logits, temperature=tau_l),
        "cos_prosodic": cosine_embedding_loss(pros_emb_mapped, teacher_p_emb),
        "cos_linguistic": cosine_embedding_loss(ling_emb_mapped, teacher_l_emb),
    }


def emodistill_weights(w_p: float, w_l: float, w_cos: float) -> dict[str, float]:
    """Term weights of ``CE + w_p KL_P + w_l KL_L + w_cos (cos_P + cos_L)``.

    A teacher whose logit weight is 0 is switched off entirely: its cosine term gets weight 0 too,
    so ``w_p = 0`` / ``w_l = 0`` are the paper's single-teacher ablations (the student never sees
    that teacher) rather than "embedding KD only" from it.
    """
    for name, w in (("w_p", w_p), ("w_l", w_l), ("w_cos", w_cos)):
        if not w >= 0:
            raise ValueError(f"{name} must be >= 0, got {w}")
    return {
        "ce": 1.0,
        "kl_prosodic": float(w_p),
        "kl_linguistic": float(w_l),
        "cos_prosodic": float(w_cos) if w_p > 0 else 0.0,
        "cos_linguistic": float(w_cos) if w_l > 0 else 0.0,
    }


def emodistill_total(terms: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """``sum_k weights[k] * terms[k]`` over the terms of non-zero weight.

    A zero-weight term is left out of the sum, not multiplied by 0, so nothing (not even a NaN from
    an ablated teacher) flows back through it, as in ``WeightedSumObjective``.
    """
    unknown = sorted(set(weights) - set(terms))
    if unknown:
        raise ValueError(f"weights name terms {unknown} that are not computed; terms: {', '.join(terms)}")
    active = [weights[k] * terms[k] for k in weights if weights[k] != 0.0]
    if not active:
        return torch.zeros((), device=next(iter(terms.values())).device)
    total = active[0]
    for value in active[1:]:
        total = total + value
    return total


# --- the objective ``emodistill``: its terms registered on ClassifierBatch -----------------------------
# Registered here, where the terms are defined (``pldistill.losses`` imports this module after
# :mod:`.objectives`). Names differ from EMODISTILL_TERMS where a name is the LLM family's already
# (``ce`` is the token CE of eq. 7): ``class_ce`` is the CE over the classes, one row per clip.


@register_term("class_ce", label="CE", inputs=(), family="classifier")
def _class_ce(batch: ClassifierBatch, opts: TermOptions) -> Tensor:
    """Cross-entropy of the class logits ``(B, C)`` against the labels ``(B,)``, mean over clips. An
    unlabelled clip (``batch.labelled`` False) adds 0 and still counts in ``B``, as its single-clip
    loss would in an accumulated batch; the mean is divided by ``opts.ce_share`` (rho), so the
    labelled clips' sum is over ``B * rho``, their expected number (as the audio LLM's CE)."""
    logits = batch.student_logits.to(_float_dtype(batch.student_logits))
    if batch.labelled is None:
        return F.cross_entropy(logits, batch.labels) / opts.ce_share
    per_clip = F.cross_entropy(logits, batch.labels.clamp_min(0), reduction="none")
    return torch.where(batch.labelled, per_clip, torch.zeros_like(per_clip)).sum() / (per_clip.shape[0] * opts.ce_share)


@register_term("kl_prosodic", label="KL(prosodic)", kl=True, inputs=("teacher_p_logits",), hparams=("tau_p",),
               family="classifier", temperature="tau_p")
def _kl_prosodic(batch: ClassifierBatch, opts: TermOptions) -> Tensor:
    """:func:`class_kl` of the prosodic teacher's logits and the student's at ``tau_p``."""
    assert batch.teacher_p_logits is not None and opts.tau_p is not None
    return class_kl(batch.teacher_p_logits, batch.student_logits, temperature=opts.tau_p)


@register_term("kl_linguistic", label="KL(linguistic)", kl=True, inputs=("teacher_l_logits",), hparams=("tau_l",),
               family="classifier", temperature="tau_l")
def _kl_linguistic(batch: ClassifierBatch, opts: TermOptions) -> Tensor:
    """:func:`class_kl` of the linguistic teacher's logits and the student's at ``tau_l``."""
    assert batch.teacher_l_logits is not None and opts.tau_l is not None
    return class_kl(batch.teacher_l_logits, batch.student_logits, temperature=opts.tau_l)


@register_term("cos_prosodic", label="Cos(prosodic)", inputs=("student_pros", "teacher_p_emb"), family="classifier")
def _cos_prosodic(batch: ClassifierBatch, opts: TermOptions) -> Tensor:
    """:func:`cosine_embedding_loss` of the (mapped) prosodic head against the prosodic teacher's embedding."""
    assert batch.student_pros is not None and batch.teacher_p_emb is not None
    return cosine_embedding_loss(batch.student_pros, batch.teacher_p_emb)


@register_term("cos_linguistic", label="Cos(linguistic)", inputs=("student_ling", "teacher_l_emb"),
               family="classifier")
def _cos_linguistic(batch: ClassifierBatch, opts: TermOptions) -> Tensor:
    """:func:`cosine_embedding_loss` of the (mapped) linguistic head against the linguistic teacher's embedding."""
    assert batch.student_ling is not None and batch.teacher_l_emb is not None
    return cosine_embedding_loss(batch.student_ling, batch.teacher_l_emb)


# CE + w_p KL_P + w_l KL_L + w_cos (cos_P + cos_L); a teacher whose KL weight is 0 takes its cosine
# term with it (emodistill_weights' rule), so w_p = 0 / w_l = 0 are the single-teacher ablations.
register_objective("emodistill", label="EmoDistill", class_ce=None, kl_prosodic="w_p", kl_linguistic="w_l",
                   cos_prosodic="w_cos", cos_linguistic="w_cos",
                   gates={"cos_prosodic": "w_p", "cos_linguistic": "w_l"},
                   ablations={"w_p": "w/o prosodic teacher", "w_l": "w/o linguistic teacher"})
