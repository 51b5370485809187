"""An objective's logit terms from the student's hidden states: :func:`.fused_distill_terms` per teacher.

When a :class:`.DistillBatch` carries the student's final hidden states and ``lm_head`` weight
instead of its logits, :class:`.WeightedSumObjective` computes every term that reads the logits
here, chunk by chunk, so the student's ``(positions, V)`` logits and their gradient never exist
whole (``bench/kl_memory.py``). Same values and gradients as the terms on materialised logits
(``tests/unit/losses/test_loss_fused_objective.py``, ``tests/unit/train/test_step_fused.py``).

Terms are grouped by the teacher distribution they compare with; each group is one
:func:`.fused_distill_terms` call, which reads only the rows its terms' masks select. CAAD's
``kl_response_cd`` is a forward KL on the response rows against the contrastive teacher
``(1 + a) z_audio - a z_text`` (:mod:`.contrastive`), so it is a group of its own: its response
rows are few, and the audio rows (``kl_audio``) are read by the plain group only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

from torch import Tensor

from .contrastive import contrastive_hidden, contrastive_logits
from .fused import fused_distill_terms

if TYPE_CHECKING:  # the objective module imports this one
    from .objectives import DistillBatch, TermOptions

__all__ = ["FUSABLE_TERMS", "FUSED_CHUNK", "fused_logit_terms"]

#: Objective term -> (the term of :func:`.fused_distill_terms` it is, the teacher it compares with).
_FUSED: Mapping[str, tuple[str, str]] = MappingProxyType({
    "ce": ("ce", "plain"),
    "kl_audio": ("kl_audio", "plain"),
    "kl_response": ("kl_response", "plain"),
    "rkl_response": ("rkl_response", "plain"),
    "kl_response_cd": ("kl_response", "contrastive"),
})
#: The objective terms this module computes from hidden states.
FUSABLE_TERMS = frozenset(_FUSED)
#: Positions per chunk when the objective has no ``kl_chunk_size``: about three ``(chunk, V)`` fp32
#: tensors at a time, 0.06 of the naive peak at the real sizes (bench/RESULTS.md).
FUSED_CHUNK = 128


def fused_logit_terms(batch: DistillBatch, names: Sequence[str], opts: TermOptions,
                      reductions: Mapping[str, str]) -> dict[str, Tensor]:
    """The unweighted terms ``names`` (all in :data:`FUSABLE_TERMS`) of ``batch``, whose
    ``student_hidden`` ``(B, L, Hs)`` and ``student_lm_head`` ``(V, Hs)`` stand for its logits.

    ``reductions``: term -> reduction (see :mod:`.reduction`). The KL terms use ``opts.temperature``,
    CE ``t = 1`` and divided by ``opts.ce_share``; chunks of ``opts.kl_chunk_size`` positions (:data:`FUSED_CHUNK` when None).
    """
    assert batch.student_hidden is not None and batch.student_lm_head is not None
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(_FUSED[name][1], []).append(name)
    out: dict[str, Tensor] = {}
    for kind, terms in groups.items():
        fused = [_FUSED[t][0] for t in terms]
        teacher = _teacher(batch, kind, opts) if any(t != "ce" for t in terms) else {}
        values = fused_distill_terms(
            batch.student_hidden, batch.student_lm_head, batch.labels, batch.response_mask, batch.audio_mask,
            terms=fused, temperature=opts.temperature, chunk_size=opts.kl_chunk_size or FUSED_CHUNK,
            reduction={f: reductions[t] for f, t in zip(fused, terms)}, ce_mask=batch.ce_mask, **teacher)
        # CE over B * rho clips (TermOptions.ce_share), as the unfused term divides it
        out.update({t: values[f] / opts.ce_share if t == "ce" else values[f] for f, t in zip(fused, terms)})
    return {name: out[name] for name in names}


def _teacher(batch: DistillBatch, kind: str, opts: TermOptions) -> dict[str, Tensor | None]:
    """The teacher side of a group as :func:`.fused_distill_terms` takes it: logits, or hidden states
    and ``lm_head`` (read when the batch has no logits, as the unfused terms do)."""
    from_hidden = batch.teacher_logits is None and batch.teacher_hidden is not None
    if kind == "plain":
        if from_hidden:
            return {"teacher_hidden": batch.teacher_hidden, "teacher_lm_head": batch.teacher_lm_head}
        return {"teacher_logits": batch.teacher_logits}
    a = opts.caad_contrast
    assert a is not None, "kl_response_cd needs TermOptions.caad_contrast"
    if from_hidden:
        assert batch.teacher_hidden is not None and batch.teacher_text_hidden is not None
        mixed = contrastive_hidden(batch.teacher_hidden.detach(), batch.teacher_text_hidden.detach(), a)
        return {"teacher_hidden": mixed, "teacher_lm_head": batch.teacher_lm_head}
    assert batch.teacher_logits is not None and batch.teacher_text_logits is not None
    return {"teacher_logits": contrastive_logits(batch.teacher_logits.detach(), batch.teacher_text_logits.detach(), a)}
