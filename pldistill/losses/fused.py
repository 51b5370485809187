"""The student's ``lm_head`` fused with its logit losses: CE (eq. 7) and KL (eq. 5-6), chunked over positions.

Materialising the student's logits costs ``positions x V`` floats (464 MiB in fp32 at 800
positions and V = 151,936), and their gradient as much again. :func:`fused_distill_terms` never
holds more than one chunk of them (with the log-probabilities of both sides, about three
``(chunk, V)`` tensors at a time; ``bench/kl_memory.py``). It takes the student's final hidden
states and its ``lm_head`` weight and, chunk by chunk, computes the logits, every requested term's
values and their gradient with respect to the logits, which it turns at once into gradients of
the hidden states (and of the weight). The idea is that of fused linear + loss kernels
(Liger-Kernel's fused linear cross-entropy / JSD), with every term returned separately, so the
objective can log each one and weight them as it likes.

With a frozen head (LoRA leaves it frozen) the gradients are computed in the forward pass, one
``(B, L, Hs)`` tensor per term, and the backward pass only scales and adds them. Otherwise (and
with ``grad_in_forward=False``) the forward pass keeps only its inputs and the backward pass
recomputes each chunk's logits: one more ``lm_head`` matmul per chunk, and no ``(V, Hs)`` weight
gradient per term.

The teacher side is either its logits or its hidden states plus its ``lm_head`` (teacher logits
recomputed per chunk, as in :func:`.kl_divergence_from_hidden`). The per-position formulas and
their closed-form gradients are those of :mod:`.kl`, written to overwrite their inputs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .kl import _check_options, _teacher_chunk
from .reduction import check_reduction, position_weights

__all__ = ["FUSED_TERMS", "fused_distill_terms"]

#: Term name -> (the mask it reads: "ce", "response" or "audio", KL direction or None for CE). The
#: names are those of :data:`pldistill.losses.TERMS`. CE reads ``ce_mask`` (the response positions of
#: labelled clips), which is ``response_mask`` unless some clips are unlabelled.
FUSED_TERMS: Mapping[str, tuple[str, str | None]] = MappingProxyType(
    {
        "ce": ("ce", None),  # eq. 7
        "kl_audio": ("audio", "forward"),  # eq. 5
        "kl_response": ("response", "forward"),  # eq. 6
        "rkl_response": ("response", "reverse"),  # the "Reverse KL" baseline
    }
)


def fused_distill_terms(
    student_hidden: Tensor,
    student_lm_head: Tensor,
    labels: Tensor,
    response_mask: Tensor,
    audio_mask: Tensor,
    *,
    terms: Sequence[str] = ("ce",),
    teacher_logits: Tensor | None = None,
    teacher_hidden: Tensor | None = None,
    teacher_lm_head: Tensor | None = None,
    teacher_lm_head_bias: Tensor | None = None,
    temperature: float = 1.0,
    chunk_size: int = 128,
    reduction: str | Mapping[str, str] = "batch_mean",
    grad_in_forward: bool = True,
    ce_mask: Tensor | None = None,
) -> dict[str, Tensor]:
    """Unweighted CE and KL terms of the student logits ``Z_S = student_hidden @ student_lm_head.T``.

    Each term equals the unfused computation on materialised logits: ``ce`` is
    :func:`.cross_entropy` (eq. 7) over ``ce_mask`` (default ``response_mask``); ``kl_audio`` / ``kl_response`` are
    ``KL(P_T || P_S)`` at temperature ``t`` over ``audio_mask`` / ``response_mask`` (eq. 5 / 6),
    ``rkl_response`` is ``KL(P_S || P_T)``, all as :func:`.kl_divergence`. Only the union of the
    masked positions is read, ``chunk_size`` positions at a time; each term reads only its own rows.

    Args:
        student_hidden: ``(B, L, Hs)`` final hidden states of the student; other positions than
            the masked ones may hold anything.
        student_lm_head: ``(V, Hs)`` ``lm_head`` weight already cut to the shared vocabulary
            (``weight[:V]``, as ``AudioLMHead.logits`` does); no bias (Qwen2 has none). Gets a
            gradient if it requires one (a frozen head does not).
        labels: ``(B, L)`` long, target token of the logit at each position: a valid token id
            wherever ``response_mask`` is true (no ignore index there); read only if ``ce`` is
            requested.
        response_mask, audio_mask: ``(B, L)`` bool.
        terms: names from :data:`FUSED_TERMS`.
        teacher_logits: ``(B, L, V)``; or, instead, ``teacher_hidden`` ``(B, L, Ht)`` with
            ``teacher_lm_head`` ``(V, Ht)`` (and ``teacher_lm_head_bias`` ``(V,)`` or None).
            Needed by the KL terms only; never gets a gradient.
        temperature: ``t`` of eq. 5 for the KL terms (CE uses ``t = 1``).
        chunk_size: positions per chunk (of the union of the masks).
        reduction: one of :data:`.REDUCTIONS` for every term, or a mapping term name -> reduction
            (terms left out use ``batch_mean``), e.g. ``{"ce": "sample_sum"}`` for eq. 7 exactly.
        grad_in_forward: with a frozen ``student_lm_head``, compute each term's gradient w.r.t. the
            hidden states in the forward pass from the logits it has anyway (saving one
            ``lm_head`` matmul and the softmaxes per chunk in the backward pass; a term that never
            reaches the loss costs its gradient all the same). False, or a head that needs a
            gradient: the backward pass recomputes the logits. Same values and gradients.
        ce_mask: ``(B, L)`` bool, the positions ``ce`` reads when they are not all of
            ``response_mask`` (unlabelled clips, whose response is the teacher's answer, have none);
            a sample without any still counts in ``B`` of the per-sample reductions.

    Returns:
        ``{term: scalar}`` in the order of ``terms``, fp32 (fp64 when an input of the term is
        fp64). A term with no masked position is 0 with a zero gradient.
    """
    names = list(dict.fromkeys(terms))
    ce_mask = response_mask if ce_mask is None else ce_mask
    teacher, head = _check_inputs(student_hidden, student_lm_head, labels, response_mask, audio_mask, names,
                                  teacher_logits, teacher_hidden, teacher_lm_head, teacher_lm_head_bias, ce_mask)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    _check_options("forward", temperature, chunk_size, "batch_mean")
    reductions = {t: reduction if isinstance(reduction, str) else reduction.get(t, "batch_mean") for t in names}
    for r in reductions.values():
        check_reduction(r)
    plan = _plan(names, labels, {"response": response_mask, "audio": audio_mask, "ce": ce_mask}, reductions, chunk_size,
                 student_lm_head.dtype, teacher)
    # Gradients in the forward pass need a frozen head and a graph being recorded (not under no_grad).
    in_forward = grad_in_forward and torch.is_grad_enabled() and student_hidden.requires_grad \
        and not student_lm_head.requires_grad
    values = _FusedTerms.apply(student_hidden, student_lm_head, teacher, head, plan, temperature, in_forward)
    return dict(zip(names, values))


@dataclass
class _Term:
    """What one term needs per row of the plan's union of positions."""

    direction: str | None  # None: cross-entropy
    weights: Tensor  # (n,) reduction weights (0 on rows the term does not read; never used there)
    labels: Tensor | None  # (n,) for CE
    dtype: torch.dtype


@dataclass
class _Plan:
    """The union of the terms' positions, grouped by which terms read them, cut into chunks that
    never straddle two groups: every term reads either all rows of a chunk or none (no partial
    copies, no scatter), whatever the batch's layout of audio and response positions."""

    rows_b: Tensor  # (n,)
    rows_l: Tensor  # (n,)
    chunks: list[tuple[int, int, tuple[int, ...]]]  # (start, end, indices of the terms reading the rows)
    terms: list[_Term]


def _plan(names: list[str], labels: Tensor, masks: dict[str, Tensor], reductions: dict[str, str],
          chunk_size: int, student_dtype: torch.dtype, teacher: Tensor | None) -> _Plan:
    """Rows, chunks and per-row weights of every term (two host syncs, none per chunk)."""
    union = torch.zeros_like(masks["response"])
    for t in names:
        union = union | masks[FUSED_TERMS[t][0]]
    rows_b, rows_l = union.nonzero(as_tuple=True)
    reads = torch.stack([masks[FUSED_TERMS[t][0]][rows_b, rows_l] for t in names]) if names \
        else torch.zeros(0, rows_b.numel(), dtype=torch.bool, device=rows_b.device)
    bits = torch.arange(len(names), device=rows_b.device)[:, None]
    code, order = torch.sort((reads.long() << bits).sum(0), stable=True)  # which terms read each row
    rows_b, rows_l = rows_b[order], rows_l[order]
    groups, counts = torch.unique_consecutive(code, return_counts=True)
    chunks, first = [], 0
    for group, count in zip(groups.tolist(), counts.tolist()):
        ids = tuple(k for k in range(len(names)) if group >> k & 1)
        chunks += [(s, min(s + chunk_size, first + count), ids) for s in range(first, first + count, chunk_size)]
        first += count
    terms = []
    for t in names:
        mask_name, direction = FUSED_TERMS[t]
        f64 = student_dtype == torch.float64 or (direction is not None and teacher is not None
                                                 and teacher.dtype == torch.float64)
        dtype = torch.float64 if f64 else torch.float32
        terms.append(_Term(direction, position_weights(masks[mask_name], reductions[t], dtype)[rows_b, rows_l],
                           labels[rows_b, rows_l] if direction is None else None, dtype))
    return _Plan(rows_b, rows_l, chunks, terms)


def _check_inputs(hidden: Tensor, weight: Tensor, labels: Tensor, response_mask: Tensor, audio_mask: Tensor,
                  names: list[str], teacher_logits: Tensor | None, teacher_hidden: Tensor | None,
                  teacher_head: Tensor | None, teacher_bias: Tensor | None, ce_mask: Tensor,
                  ) -> tuple[Tensor | None, tuple[Tensor, Tensor | None] | None]:
    """Shapes and names checked; returns the teacher tensor and head as :func:`._teacher_chunk` reads them."""
    unknown = [t for t in names if t not in FUSED_TERMS]
    if unknown:
        raise ValueError(f"unknown term(s) {unknown}; valid: {', '.join(FUSED_TERMS)}")
    if hidden.dim() != 3 or weight.dim() != 2 or weight.shape[1] != hidden.shape[2]:
        raise ValueError(f"student_hidden must be (B, L, Hs) and student_lm_head (V, Hs), got "
                         f"{tuple(hidden.shape)} and {tuple(weight.shape)}")
    for name, m in (("response_mask", response_mask), ("audio_mask", audio_mask), ("ce_mask", ce_mask),
                    ("labels", labels)):
        if m.shape != hidden.shape[:2] or (name != "labels" and m.dtype != torch.bool):
            raise ValueError(f"{name} must be {'bool ' if name != 'labels' else ''}{tuple(hidden.shape[:2])}, "
                             f"got {m.dtype} {tuple(m.shape)}")
    if all(FUSED_TERMS[t][1] is None for t in names):
        return None, None
    v = weight.shape[0]
    if teacher_logits is not None:
        if teacher_logits.shape != (*hidden.shape[:2], v):
            raise ValueError(f"teacher_logits must be {(*hidden.shape[:2], v)}, got {tuple(teacher_logits.shape)}")
        return teacher_logits.detach(), None
    if teacher_hidden is None or teacher_head is None:
        raise ValueError("the KL terms need teacher_logits, or teacher_hidden with teacher_lm_head")
    if teacher_hidden.dim() != 3 or teacher_hidden.shape[:2] != hidden.shape[:2] \
            or teacher_head.shape != (v, teacher_hidden.shape[2]):
        raise ValueError(f"teacher_hidden must be (B, L, Ht) = ({hidden.shape[0]}, {hidden.shape[1]}, Ht) and "
                         f"teacher_lm_head ({v}, Ht), got {tuple(teacher_hidden.shape)} and "
                         f"{tuple(teacher_head.shape)}")
    bias = None if teacher_bias is None else teacher_bias.detach()
    return teacher_hidden.detach(), (teacher_head.detach(), bias)


def _hidden_rows(hidden: Tensor, weight: Tensor, b: Tensor, l_: Tensor) -> Tensor:
    """The chunk's hidden rows ``(c, Hs)`` in the weight's dtype; ``F.linear(rows, weight)`` are its
    logits, as ``AudioLMHead.logits`` computes them."""
    return hidden[b, l_].to(weight.dtype)


def _teacher_log_probs(teacher: Tensor | None, head: tuple[Tensor, Tensor | None] | None, b: Tensor, l_: Tensor,
                       temperature: float, dtype: torch.dtype) -> Tensor:
    """``log softmax(Z_T / t)`` of the rows ``(b, l_)``; the raw teacher rows die here."""
    assert teacher is not None
    rows = _teacher_chunk(teacher, head, b, l_).to(dtype)  # a fresh copy (gathered rows), ours to scale in place
    return F.log_softmax(rows.div_(temperature) if temperature != 1.0 else rows, dim=-1)


# The functions below consume (overwrite) their (chunk, V) arguments and drop every such tensor as
# soon as it is spent: at most three are alive at a time, so a chunk costs about three times its
# logits (a plain implementation holds nine). Values are the same bits with or without gradients.

def _kl_value_grad(log_t: Tensor, log_s: Tensor, direction: str, want_grad: bool) -> tuple[Tensor, Tensor | None]:
    """Eq. 5-6 per row, ``sum_k P(k) (log P(k) - log Q(k))`` with ``(P, Q) = (P_T, P_S)`` (forward)
    or ``(P_S, P_T)`` (reverse), ``(c,)``; and, if wanted, its gradient w.r.t. ``Z_S / t``:
    ``P_S - P_T`` (forward) or ``P_S * (g - sum(P_S * g))`` with ``g = log P_S - log P_T``
    (reverse), the closed forms of :mod:`.kl`."""
    if direction == "forward":
        p_t = log_t.exp() if want_grad else None
        diff = log_s.neg_().add_(log_t) if not want_grad else log_t.sub_(log_s)  # log_t - log_s, same bits
        value = diff.mul_(p_t if p_t is not None else log_t.exp_()).sum(-1)
        del diff
        return value, None if p_t is None else log_s.exp_().sub_(p_t)
    g = log_s - log_t
    del log_t
    p_s = log_s.exp_()
    dot = (p_s * g).sum(-1, keepdim=True)  # sum(P_S * g): the value, and a part of the gradient
    return dot.squeeze(-1), g.sub_(dot).mul_(p_s) if want_grad else None


def _ce_value_grad(z: Tensor, labels: Tensor, dtype: torch.dtype, want_grad: bool) -> tuple[Tensor, Tensor | None]:
    """``-log softmax(z)[label]`` per row (eq. 7), ``(c,)``; and, if wanted, its gradient w.r.t.
    ``z``: ``softmax(z) - onehot(label)``. Leaves ``z`` intact (the KL terms read it next)."""
    log_p = F.log_softmax(z.to(dtype), dim=-1)
    rows = torch.arange(log_p.shape[0], device=log_p.device)
    value = -log_p[rows, labels]
    if not want_grad:
        return value, None
    grad = log_p.exp_()
    grad[rows, labels] -= 1.0
    return value, grad


def _chunk_terms(ctx: Any, teacher: Tensor | None, weight: Tensor, h: Tensor, b: Tensor, l_: Tensor, start: int,
                 end: int, ids: Sequence[int], want_grad: bool) -> Iterator[tuple[int, Tensor, Tensor | None]]:
    """For each term ``k`` of ``ids``, in turn: ``(k, sum of weight * value over the chunk, weight *
    d value / d z or None)`` with ``z = F.linear(h, weight)`` the chunk's logits. The caller drops
    each gradient before asking for the next."""
    plan: _Plan = ctx.plan
    t = ctx.temperature
    z = F.linear(h, weight)
    kl = [k for k in ids if plan.terms[k].direction is not None]
    # Results go straight from call to yield: a name here would keep the last gradient alive while
    # the caller computes the next one.
    for k in (k for k in ids if plan.terms[k].direction is None):  # CE reads z at t = 1: first
        term = plan.terms[k]
        yield k, _weighted(term, *_ce_value_grad(z, term.labels[start:end], term.dtype, want_grad), start, end, 1.0)
    if not kl:
        return
    zs = z.to(plan.terms[kl[0]].dtype)
    del z
    log_s = [F.log_softmax(zs.div_(t) if t != 1.0 else zs, dim=-1)]  # in a list: pop() hands it over
    del zs
    for i, k in enumerate(kl):
        term = plan.terms[k]
        yield k, _weighted(term, *_kl_value_grad(  # d/dZ = (1/t) d/d(Z/t), in _weighted
            _teacher_log_probs(teacher, ctx.head, b, l_, t, term.dtype),
            log_s.pop() if i == len(kl) - 1 else log_s[0].clone(),  # each KL term consumes its own
            term.direction, want_grad), start, end, t)


def _weighted(term: _Term, value: Tensor, grad: Tensor | None, start: int, end: int, t: float,
              ) -> tuple[Tensor, Tensor | None]:
    """The chunk's reduction-weighted value sum, and the gradient rows scaled by weight / t (in place)."""
    w = term.weights[start:end]
    if grad is not None:
        grad = grad.mul_((w / t if t != 1.0 else w)[:, None].to(grad.dtype))
    return (value * w).sum(), grad


class _FusedTerms(torch.autograd.Function):
    """Every term's value, chunk by chunk, and its gradient w.r.t. the hidden states.

    Frozen head (the LoRA case): the forward pass also computes each term's gradient w.r.t. the
    hidden rows (``(B, L, Hs)`` per term, small) from the same logits, and the backward pass only
    combines them with the upstream gradients: one ``lm_head`` matmul per chunk and pass, no
    recomputation. Head with a gradient (or ``grad_in_forward`` False): the forward saves only
    its inputs; the backward recomputes each chunk's logits, sums the terms' logit gradients
    (scaled by their upstream gradients) into one ``(chunk, V)`` tensor and pushes it through the
    linear layer into the hidden rows and the weight. Per-term weight gradients would each be
    ``(V, Hs)``, too large to keep one per term.
    """

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, teacher: Tensor | None,  # type: ignore[override]
                head: tuple[Tensor, Tensor | None] | None, plan: _Plan, temperature: float,
                grad_in_forward: bool) -> tuple[Tensor, ...]:
        ctx.set_materialize_grads(False)  # a term left out of the loss gets None: skipped, never 0 * NaN
        ctx.head, ctx.plan, ctx.temperature, ctx.grad_in_forward = head, plan, temperature, grad_in_forward
        ctx.hidden_dtype = hidden.dtype
        totals = [torch.zeros((), dtype=t.dtype, device=hidden.device) for t in plan.terms]
        grads_h = [torch.zeros(hidden.shape, dtype=t.dtype, device=hidden.device) if grad_in_forward else None
                   for t in plan.terms]
        for start, end, ids in plan.chunks:
            b, l_ = plan.rows_b[start:end], plan.rows_l[start:end]
            for k, (value, g) in _chunk_terms(ctx, teacher, weight, _hidden_rows(hidden, weight, b, l_), b, l_,
                                              start, end, ids, grad_in_forward):
                totals[k] += value
                if g is not None:
                    grads_h[k][b, l_] = (g.to(weight.dtype) @ weight).to(grads_h[k].dtype)
                del g  # before the next term's gradient exists
        if grad_in_forward:
            ctx.save_for_backward(*grads_h)
        else:
            ctx.save_for_backward(hidden, weight, teacher)
        return tuple(totals)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        if ctx.grad_in_forward:
            used = [(g, d) for g, d in zip(grads, ctx.saved_tensors) if g is not None]
            grad_h = sum(d * g.to(d.dtype) for g, d in used) if used else None
            return None if grad_h is None else grad_h.to(ctx.hidden_dtype), None, None, None, None, None, None
        return (*_recompute_backward(ctx, grads), None, None, None, None, None)


def _recompute_backward(ctx: Any, grads: tuple[Tensor | None, ...]) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of the hidden states and the weight, recomputing each chunk's logits."""
    hidden, weight, teacher = ctx.saved_tensors
    plan: _Plan = ctx.plan
    need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    grad_h = torch.zeros_like(hidden, memory_format=torch.contiguous_format) if need_h else None
    acc = torch.float64 if weight.dtype == torch.float64 else torch.float32
    grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
    for start, end, ids in plan.chunks if need_h or need_w else ():
        active = [k for k in ids if grads[k] is not None]
        if not active:
            continue
        b, l_ = plan.rows_b[start:end], plan.rows_l[start:end]
        h = _hidden_rows(hidden, weight, b, l_)
        dtype = torch.float64 if any(plan.terms[k].dtype == torch.float64 for k in active) else torch.float32
        g_z: Tensor | None = None
        for k, (_, g) in _chunk_terms(ctx, teacher, weight, h, b, l_, start, end, active, True):
            assert g is not None and grads[k] is not None
            g = g.mul_(grads[k].to(g.dtype)).to(dtype)
            g_z = g if g_z is None else g_z.add_(g)
            del g
        assert g_z is not None
        g_z = g_z.to(weight.dtype)
        if grad_h is not None:
            grad_h[b, l_] = (g_z @ weight).to(grad_h.dtype)
        if grad_w is not None:
            grad_w += (g_z.t() @ h).to(acc)
        del g_z  # or it would live on through the next chunk's computation
    return grad_h, None if grad_w is None else grad_w.to(weight.dtype)
