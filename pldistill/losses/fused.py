"""The student's ``lm_head`` fused with its logit losses: CE (eq. 7) and KL (eq. 5-6), chunked over positions.

Materialising the student's logits costs ``positions x V`` floats (464 MiB in fp32 at 800
positions and V = 151,936), and their gradient as much again. :func:`fused_distill_terms` never
holds more than one chunk of them: it takes the student's final hidden states and its ``lm_head``
weight, and for each chunk of positions computes the logits, every requested term's per-position
values and, in the backward pass, their gradient with respect to the logits, which it turns at
once into gradients of the hidden states and the weight. The idea is that of fused linear +
loss kernels (Liger-Kernel's fused linear cross-entropy / JSD). Here the backward pass recomputes
each chunk's logits (one extra ``lm_head`` matmul) instead of computing gradients in the forward
pass, so every term is returned separately with its own gradient and can be weighted (and
logged) freely afterwards, with any upstream gradients.

The teacher side is either its logits or its hidden states plus its ``lm_head`` (teacher logits
recomputed per chunk, as in :func:`.kl_divergence_from_hidden`). The per-position formulas and
their closed-form gradients are those of :mod:`.kl`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .kl import _check_options, _per_position, _per_position_grad, _teacher_chunk
from .reduction import check_reduction, position_weights

__all__ = ["FUSED_TERMS", "fused_distill_terms"]

#: Term name -> (the mask it reads: "response" or "audio", KL direction or None for CE). The names
#: are those of :data:`pldistill.losses.TERMS`.
FUSED_TERMS: Mapping[str, tuple[str, str | None]] = MappingProxyType(
    {
        "ce": ("response", None),  # eq. 7
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
) -> dict[str, Tensor]:
    """Unweighted CE and KL terms of the student logits ``Z_S = student_hidden @ student_lm_head.T``.

    Each term equals the unfused computation on materialised logits: ``ce`` is
    :func:`.cross_entropy` (eq. 7) over ``response_mask``; ``kl_audio`` / ``kl_response`` are
    ``KL(P_T || P_S)`` at temperature ``t`` over ``audio_mask`` / ``response_mask`` (eq. 5 / 6),
    ``rkl_response`` is ``KL(P_S || P_T)``, all as :func:`.kl_divergence`. Only the union of the
    masked positions is read, ``chunk_size`` positions at a time; each term reads only its own rows.

    Args:
        student_hidden: ``(B, L, Hs)`` final hidden states of the student; other positions than
            the masked ones may hold anything.
        student_lm_head: ``(V, Hs)`` ``lm_head`` weight already cut to the shared vocabulary
            (``weight[:V]``, as ``AudioLMHead.logits`` does); no bias (Qwen2 has none). Gets a
            gradient if it requires one (a frozen head does not).
        labels: ``(B, L)`` long, target token of the logit at each position (read where
            ``response_mask``, only if ``ce`` is requested).
        response_mask, audio_mask: ``(B, L)`` bool.
        terms: names from :data:`FUSED_TERMS`.
        teacher_logits: ``(B, L, V)``; or, instead, ``teacher_hidden`` ``(B, L, Ht)`` with
            ``teacher_lm_head`` ``(V, Ht)`` (and ``teacher_lm_head_bias`` ``(V,)`` or None).
            Needed by the KL terms only; never gets a gradient.
        temperature: ``t`` of eq. 5 for the KL terms (CE uses ``t = 1``).
        chunk_size: positions per chunk (of the union of the masks).
        reduction: one of :data:`.REDUCTIONS` for every term, or a mapping term name -> reduction
            (terms left out use ``batch_mean``), e.g. ``{"ce": "sample_sum"}`` for eq. 7 exactly.

    Returns:
        ``{term: scalar}`` in the order of ``terms``, fp32 (fp64 when an input of the term is
        fp64). A term with no masked position is 0 with a zero gradient.
    """
    names = list(dict.fromkeys(terms))
    teacher, head = _check_inputs(student_hidden, student_lm_head, labels, response_mask, audio_mask, names,
                                  teacher_logits, teacher_hidden, teacher_lm_head, teacher_lm_head_bias)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    _check_options("forward", temperature, chunk_size, "batch_mean")
    reductions = {t: reduction if isinstance(reduction, str) else reduction.get(t, "batch_mean") for t in names}
    for r in reductions.values():
        check_reduction(r)
    plan = _plan(names, labels, {"response": response_mask, "audio": audio_mask}, reductions, chunk_size,
                 student_lm_head.dtype, teacher)
    values = _FusedTerms.apply(student_hidden, student_lm_head, teacher, head, plan, temperature)
    return dict(zip(names, values))


@dataclass
class _Term:
    """One term's rows within the union of positions (sorted), and what it needs per row."""

    direction: str | None  # None: cross-entropy
    index: Tensor  # (k,) positions in the union order
    weights: Tensor  # (k,) reduction weights
    labels: Tensor | None  # (k,) for CE
    rows_b: Tensor  # (k,)
    rows_l: Tensor  # (k,)
    bounds: list[int]  # index[bounds[c]:bounds[c + 1]] falls in chunk c
    dtype: torch.dtype


@dataclass
class _Plan:
    rows_b: Tensor  # (n,) the union of the masked positions
    rows_l: Tensor
    chunk_size: int
    terms: list[_Term]


def _plan(names: list[str], labels: Tensor, masks: dict[str, Tensor], reductions: dict[str, str],
          chunk_size: int, student_dtype: torch.dtype, teacher: Tensor | None) -> _Plan:
    """Rows, weights and chunk bounds of every term (one host sync per term, none per chunk)."""
    union = torch.zeros_like(masks["response"])
    for t in names:
        union = union | masks[FUSED_TERMS[t][0]]
    rows_b, rows_l = union.nonzero(as_tuple=True)
    starts = torch.arange(0, rows_b.numel() + chunk_size, chunk_size, device=rows_b.device)
    starts = starts.clamp_max(rows_b.numel())  # the last entry closes the last chunk
    out = []
    for t in names:
        mask_name, direction = FUSED_TERMS[t]
        mask = masks[mask_name]
        index = mask[rows_b, rows_l].nonzero().squeeze(1)
        b, l_ = rows_b[index], rows_l[index]
        f64 = student_dtype == torch.float64 or (direction is not None and teacher is not None
                                                 and teacher.dtype == torch.float64)
        dtype = torch.float64 if f64 else torch.float32
        out.append(_Term(direction, index, position_weights(mask, reductions[t], dtype)[b, l_],
                         labels[b, l_] if direction is None else None, b, l_,
                         torch.searchsorted(index, starts).tolist(), dtype))
    return _Plan(rows_b, rows_l, chunk_size, out)


def _check_inputs(hidden: Tensor, weight: Tensor, labels: Tensor, response_mask: Tensor, audio_mask: Tensor,
                  names: list[str], teacher_logits: Tensor | None, teacher_hidden: Tensor | None,
                  teacher_head: Tensor | None, teacher_bias: Tensor | None,
                  ) -> tuple[Tensor | None, tuple[Tensor, Tensor | None] | None]:
    """Shapes and names checked; returns the teacher tensor and head as :func:`._teacher_chunk` reads them."""
    unknown = [t for t in names if t not in FUSED_TERMS]
    if unknown:
        raise ValueError(f"unknown term(s) {unknown}; valid: {', '.join(FUSED_TERMS)}")
    if hidden.dim() != 3 or weight.dim() != 2 or weight.shape[1] != hidden.shape[2]:
        raise ValueError(f"student_hidden must be (B, L, Hs) and student_lm_head (V, Hs), got "
                         f"{tuple(hidden.shape)} and {tuple(weight.shape)}")
    for name, m in (("response_mask", response_mask), ("audio_mask", audio_mask), ("labels", labels)):
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


def _student_chunk(hidden: Tensor, weight: Tensor, b: Tensor, l_: Tensor) -> tuple[Tensor, Tensor]:
    """The chunk's hidden rows (in the weight's dtype) and its logits ``(c, V)``, as ``AudioLMHead.logits``."""
    h = hidden[b, l_].to(weight.dtype)
    return h, F.linear(h, weight)


def _term_rows(term: _Term, z: Tensor, start: int, a: int, b: int) -> Tensor:
    """The rows of the chunk's logits ``z`` that ``term`` reads: ``z`` itself when it reads them all."""
    if b - a == z.shape[0]:
        return z
    return z[term.index[a:b] - start]


def _ce_rows(z: Tensor, labels: Tensor, dtype: torch.dtype) -> Tensor:
    """``-log softmax(z)[label]`` per row: ``(k,)``."""
    z = z.to(dtype)
    return torch.logsumexp(z, -1) - z.gather(-1, labels[:, None]).squeeze(-1)


def _ce_grad(z: Tensor, labels: Tensor, dtype: torch.dtype) -> Tensor:
    """Gradient of :func:`_ce_rows` (summed) w.r.t. ``z``: ``softmax(z) - onehot(label)``."""
    p = torch.softmax(z.to(dtype), -1)
    p[torch.arange(p.shape[0], device=p.device), labels] -= 1.0
    return p


class _FusedTerms(torch.autograd.Function):
    """Forward: every term's value, chunk by chunk, saving only the inputs. Backward: each chunk's
    logits recomputed, the terms' closed-form logit gradients (scaled by their upstream gradients
    and reduction weights) summed into one ``(chunk, V)`` tensor, then pushed through the linear
    layer into the hidden rows and the weight."""

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, teacher: Tensor | None,  # type: ignore[override]
                head: tuple[Tensor, Tensor | None] | None, plan: _Plan, temperature: float) -> tuple[Tensor, ...]:
        ctx.set_materialize_grads(False)  # a term left out of the loss gets None: skipped, never 0 * NaN
        totals = [torch.zeros((), dtype=t.dtype, device=hidden.device) for t in plan.terms]
        for c, start in enumerate(range(0, plan.rows_b.numel(), plan.chunk_size)):
            end = start + plan.chunk_size
            _, z = _student_chunk(hidden, weight, plan.rows_b[start:end], plan.rows_l[start:end])
            for k, term in enumerate(plan.terms):
                a, b = term.bounds[c], term.bounds[c + 1]
                if a == b:
                    continue
                zk = _term_rows(term, z, start, a, b)
                if term.direction is None:
                    per_row = _ce_rows(zk, term.labels[a:b], term.dtype)
                else:
                    t_rows = _teacher_chunk(teacher, head, term.rows_b[a:b], term.rows_l[a:b])
                    per_row = _per_position(t_rows, zk, temperature, term.direction)
                totals[k] += (per_row * term.weights[a:b]).sum()
        ctx.save_for_backward(hidden, weight, teacher)
        ctx.head, ctx.plan, ctx.temperature = head, plan, temperature
        return tuple(totals)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        hidden, weight, teacher = ctx.saved_tensors
        plan: _Plan = ctx.plan
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.zeros_like(hidden, memory_format=torch.contiguous_format) if need_h else None
        acc = torch.float64 if weight.dtype == torch.float64 else torch.float32
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        active = [(k, g) for k, g in enumerate(grads) if g is not None]
        for c, start in enumerate(range(0, plan.rows_b.numel(), plan.chunk_size) if active else ()):
            b_, l_ = plan.rows_b[start : start + plan.chunk_size], plan.rows_l[start : start + plan.chunk_size]
            h, z = _student_chunk(hidden, weight, b_, l_)
            g_z = _chunk_logit_grad(ctx, teacher, z, start, c, active)
            if g_z is None:
                continue
            g_z = g_z.to(weight.dtype)
            if grad_h is not None:
                grad_h[b_, l_] = (g_z @ weight).to(grad_h.dtype)
            if grad_w is not None:
                grad_w += (g_z.t() @ h).to(acc)
        grad_w_out = None if grad_w is None else grad_w.to(weight.dtype)
        return grad_h, grad_w_out, None, None, None, None


def _chunk_logit_grad(ctx: Any, teacher: Tensor | None, z: Tensor, start: int, c: int,
                      active: list[tuple[int, Tensor]]) -> Tensor | None:
    """``sum_k grad_out_k * d term_k / d z`` for one chunk's logits ``z``: ``(c, V)`` or None if no
    active term reads the chunk. Each term's rows get its closed-form gradient times its weights."""
    plan: _Plan = ctx.plan
    t = ctx.temperature
    dtype = torch.float64 if any(plan.terms[k].dtype == torch.float64 for k, _ in active) else torch.float32
    total: Tensor | None = None
    for k, grad_out in active:
        term = plan.terms[k]
        a, b = term.bounds[c], term.bounds[c + 1]
        if a == b:
            continue
        zk = _term_rows(term, z, start, a, b)
        if term.direction is None:
            g = _ce_grad(zk, term.labels[a:b], term.dtype)
        else:  # d/dZ = (1/t) d/d(Z/t)
            t_rows = _teacher_chunk(teacher, ctx.head, term.rows_b[a:b], term.rows_l[a:b])
            g = _per_position_grad(t_rows, zk, t, term.direction).div_(t)
        g = g.mul_((term.weights[a:b] * grad_out)[:, None].to(g.dtype)).to(dtype)
        full = b - a == z.shape[0]
        if total is None and full:
            total = g  # no zero-filled buffer for the common case of one term over the whole chunk
            continue
        if total is None:
            total = torch.zeros(z.shape, dtype=dtype, device=z.device)
        if full:
            total += g
        else:
            total.index_add_(0, term.index[a:b] - start, g)
    return total
