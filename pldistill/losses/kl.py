"""Temperature-scaled KL divergence between teacher and student logits (paper section 2.3, eq. 5-6).

``direction`` also gives the baselines of paper table 1: ``reverse`` (``KL(P_S || P_T)``, the
MiniLLM-style "Reverse KL") and ``jsd`` (Jensen-Shannon divergence).

Memory: at the real sizes (vocabulary 151,936, ~800 positions) one fp32 copy of the logits is
about 0.5 GB and a plain implementation holds several (two log-softmaxes, probabilities, their
gradients). ``chunk_size`` streams the positions through an autograd function that saves only its
inputs and recomputes one chunk at a time in the backward pass (``bench/kl_memory.py``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .reduction import check_reduction, position_weights

__all__ = ["KL_DIRECTIONS", "kl_divergence", "kl_divergence_from_hidden"]

#: Divergences accepted by :func:`kl_divergence`.
KL_DIRECTIONS = ("forward", "reverse", "jsd")


def kl_divergence(
    teacher_logits: Tensor,
    student_logits: Tensor,
    mask: Tensor,
    *,
    temperature: float = 1.0,
    direction: str = "forward",
    chunk_size: int | None = None,
    reduction: str = "batch_mean",
) -> Tensor:
    """Mean over the masked positions of a divergence between ``softmax(Z_T/t)`` and ``softmax(Z_S/t)``.

    ``forward`` is eq. 5-6, ``KL(P_T || P_S) = sum_k P_T(k) log(P_T(k) / P_S(k))``; ``reverse`` is
    ``KL(P_S || P_T)``; ``jsd`` is ``0.5 KL(P_T || M) + 0.5 KL(P_S || M)`` with
    ``M = (P_T + P_S) / 2``. Each is summed over the vocabulary and averaged over the positions
    where ``mask`` is true.

    Only the masked positions are ever read: they are gathered first, so values at other positions
    (prompt tokens, padding, even NaN or inf) affect neither the value nor the gradient. The
    computation is in float32 (float64 if an input is float64) whatever the input dtype.

    The teacher logits are detached: the teacher is a fixed target and receives no gradient.

    Args:
        teacher_logits: ``(B, L, V)``.
        student_logits: ``(B, L, V)``, same vocabulary (the caller slices padding rows away).
            May be a non-contiguous view; it is never copied whole.
        mask: ``(B, L)`` bool, the positions to compare (audio positions for eq. 5, response
            positions for eq. 6). Logits must be finite there.
        temperature: ``t`` of eq. 5, applied to both sides; > 0.
        direction: one of :data:`KL_DIRECTIONS`.
        chunk_size: None computes all positions at once with plain autograd, which keeps several
            fp32 ``(n, V)`` tensors alive from the forward to the backward pass. An integer
            processes that many positions at a time, so the fp32 log-softmaxes of both sides exist
            for one chunk only, in the forward and (by recomputation) in the backward pass, and
            nothing but the inputs is held in between; same value and gradient.
        reduction: ``batch_mean`` (the mean over all masked positions of the batch), or
            ``sample_mean`` / ``sample_sum`` (mean / sum over each sample's masked positions, then
            the mean over the ``B`` samples: a batch equals the mean of its single-clip values);
            see :mod:`.reduction`.

    Returns:
        A scalar. With no masked position it is 0, still connected to ``student_logits`` so that
        ``backward()`` works and gives a zero gradient.
    """
    _check_options(direction, temperature, chunk_size, reduction)
    if teacher_logits.shape != student_logits.shape or student_logits.dim() != 3:
        raise ValueError(
            f"teacher and student logits must both be (B, L, V), got {tuple(teacher_logits.shape)} "
            f"and {tuple(student_logits.shape)}"
        )
    _check_mask(mask, student_logits)

    teacher = teacher_logits.detach()
    rows_b, rows_l = mask.nonzero(as_tuple=True)
    n = rows_b.numel()
    weights = _row_weights(mask, rows_b, rows_l, reduction, _compute_dtype(teacher, student_logits))
    if chunk_size is None or n == 0:
        per_row = _per_position(
            teacher[rows_b, rows_l], student_logits[rows_b, rows_l], temperature, direction
        )
        return per_row.sum() / max(n, 1) if weights is None else (per_row * weights).sum()
    out: Tensor = _ChunkedDivergence.apply(
        teacher, None, student_logits, rows_b, rows_l, temperature, direction, chunk_size, weights
    )
    return out


def kl_divergence_from_hidden(
    teacher_hidden: Tensor,
    lm_head_weight: Tensor,
    student_logits: Tensor,
    mask: Tensor,
    *,
    temperature: float = 1.0,
    direction: str = "forward",
    chunk_size: int | None = None,
    lm_head_bias: Tensor | None = None,
    reduction: str = "batch_mean",
) -> Tensor:
    """:func:`kl_divergence` whose teacher side is ``(teacher_hidden, lm_head_weight)``.

    The teacher logits ``Z_T = teacher_hidden @ lm_head_weight.T (+ bias)`` are recomputed chunk
    by chunk over the masked positions, in the forward and again in the backward pass, so no
    teacher ``(positions, V)`` tensor is ever stored (the idea of fused linear + loss kernels):
    the teacher side costs ``(B, L, H)`` plus the ``(V, H)`` weight instead of ``(B, L, V)``.
    Same value and student gradient as ``kl_divergence(lm_head(teacher_hidden), ...)``.

    Args:
        teacher_hidden: ``(B, L, H)`` final hidden states of the teacher (read only where
            ``mask``; other positions may hold anything, e.g. zeros).
        lm_head_weight: ``(V, H)``, already cut to the shared vocabulary ``V`` of the student.
        student_logits, mask, temperature, direction: as in :func:`kl_divergence`.
        chunk_size: masked positions per chunk; None processes them all in one chunk (still
            never holding teacher logits between the forward and the backward pass).
        lm_head_bias: ``(V,)`` or None (Qwen2 has no bias).
        reduction: as in :func:`kl_divergence`.

    Returns:
        A scalar; no gradient reaches the teacher side.
    """
    _check_options(direction, temperature, chunk_size, reduction)
    if student_logits.dim() != 3 or teacher_hidden.dim() != 3 or teacher_hidden.shape[:2] != student_logits.shape[:2]:
        raise ValueError(
            f"teacher_hidden must be (B, L, H) and student_logits (B, L, V) with the same B, L; got "
            f"{tuple(teacher_hidden.shape)} and {tuple(student_logits.shape)}"
        )
    if lm_head_weight.dim() != 2 or lm_head_weight.shape != (student_logits.shape[2], teacher_hidden.shape[2]):
        raise ValueError(
            f"lm_head_weight must be (V, H) = ({student_logits.shape[2]}, {teacher_hidden.shape[2]}), "
            f"got {tuple(lm_head_weight.shape)}"
        )
    _check_mask(mask, student_logits)
    rows_b, rows_l = mask.nonzero(as_tuple=True)
    n = rows_b.numel()
    if n == 0:  # 0, still connected to the student (as kl_divergence)
        return student_logits[rows_b, rows_l].to(_compute_dtype(lm_head_weight, student_logits)).sum()
    head = (lm_head_weight.detach(), None if lm_head_bias is None else lm_head_bias.detach())
    weights = _row_weights(mask, rows_b, rows_l, reduction, _compute_dtype(lm_head_weight, student_logits))
    out: Tensor = _ChunkedDivergence.apply(
        teacher_hidden.detach(), head, student_logits, rows_b, rows_l, temperature, direction, chunk_size or n,
        weights,
    )
    return out


def _row_weights(mask: Tensor, rows_b: Tensor, rows_l: Tensor, reduction: str,
                 dtype: torch.dtype) -> Tensor | None:
    """``(n,)`` weights of the masked rows for ``reduction``; None for ``batch_mean``, which keeps
    its original arithmetic (a sum divided by ``n``) so the default numbers do not move."""
    if reduction == "batch_mean":
        return None
    return position_weights(mask, reduction, dtype)[rows_b, rows_l]


def _check_options(direction: str, temperature: float, chunk_size: int | None, reduction: str) -> None:
    check_reduction(reduction)
    if direction not in KL_DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; valid: {', '.join(KL_DIRECTIONS)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")


def _check_mask(mask: Tensor, student_logits: Tensor) -> None:
    if mask.dtype != torch.bool or mask.shape != student_logits.shape[:2]:
        raise ValueError(
            f"mask must be bool with shape {tuple(student_logits.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}"
        )


def _teacher_chunk(teacher: Tensor, head: tuple[Tensor, Tensor | None] | None, b: Tensor, l_: Tensor) -> Tensor:
    """The teacher logits of the positions ``(b, l_)``: read from ``teacher`` (``(B, L, V)`` logits),
    or, with ``head`` (weight, bias), recomputed from ``teacher`` as ``(B, L, H)`` hidden states in
    the head's dtype, as ``AudioLMHead.logits`` computes them."""
    if head is None:
        return teacher[b, l_]
    weight, bias = head
    return F.linear(teacher[b, l_].to(weight.dtype), weight, bias)


def _compute_dtype(a: Tensor, b: Tensor) -> torch.dtype:
    return torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32


def _per_position(teacher: Tensor, student: Tensor, temperature: float, direction: str) -> Tensor:
    """The divergence of each row of ``(n, V)`` logits, summed over the vocabulary: ``(n,)``."""
    dtype = _compute_dtype(teacher, student)
    t, s = teacher.to(dtype), student.to(dtype)
    if temperature != 1.0:
        t, s = t / temperature, s / temperature
    log_t, log_s = F.log_softmax(t, dim=-1), F.log_softmax(s, dim=-1)
    if direction == "forward":
        return (log_t.exp() * (log_t - log_s)).sum(-1)
    if direction == "reverse":
        return (log_s.exp() * (log_s - log_t)).sum(-1)
    log_m = torch.logaddexp(log_t, log_s) - math.log(2.0)  # log((P_T + P_S) / 2), no underflow
    return 0.5 * ((log_t.exp() * (log_t - log_m)).sum(-1) + (log_s.exp() * (log_s - log_m)).sum(-1))


class _ChunkedDivergence(torch.autograd.Function):
    """:func:`kl_divergence` over chunks of positions; with ``head``, the teacher side is hidden
    states whose logits each chunk recomputes (:func:`kl_divergence_from_hidden`).

    Saves only its inputs; the backward recomputes each chunk's log-softmaxes and applies the
    closed-form gradient (checked against autograd on the unchunked path in the tests).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        teacher: Tensor,
        head: tuple[Tensor, Tensor | None] | None,
        student: Tensor,
        rows_b: Tensor,
        rows_l: Tensor,
        temperature: float,
        direction: str,
        chunk_size: int,
        weights: Tensor | None,
    ) -> Tensor:
        n = rows_b.numel()
        dtype = _compute_dtype(teacher if head is None else head[0], student)
        total = torch.zeros((), dtype=dtype, device=student.device)
        for start in range(0, n, chunk_size):
            b, l_ = rows_b[start : start + chunk_size], rows_l[start : start + chunk_size]
            per_row = _per_position(_teacher_chunk(teacher, head, b, l_), student[b, l_], temperature, direction)
            total += per_row.sum() if weights is None else (per_row * weights[start : start + chunk_size]).sum()
        ctx.save_for_backward(teacher, student, rows_b, rows_l, weights)
        ctx.head = head
        ctx.options = (temperature, direction, chunk_size)
        return total / n if weights is None else total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        teacher, student, rows_b, rows_l, weights = ctx.saved_tensors
        temperature, direction, chunk_size = ctx.options
        n = rows_b.numel()
        grad = torch.zeros_like(student, memory_format=torch.contiguous_format)
        # d/dZ = (1/t) d/d(Z/t); batch_mean weighs every row 1/n, the other reductions row by row
        scale = grad_out / (n * temperature) if weights is None else grad_out / temperature
        for start in range(0, n, chunk_size):
            b, l_ = rows_b[start : start + chunk_size], rows_l[start : start + chunk_size]
            g = _per_position_grad(_teacher_chunk(teacher, ctx.head, b, l_), student[b, l_], temperature,
                                   direction).mul_(scale)
            if weights is not None:
                g.mul_(weights[start : start + chunk_size, None])
            grad[b, l_] = g.to(grad.dtype)
        return None, None, grad, None, None, None, None, None, None


def _per_position_grad(teacher: Tensor, student: Tensor, temperature: float, direction: str) -> Tensor:
    """Gradient of ``_per_position(...).sum()`` with respect to the scaled student logits ``Z_S/t``.

    Closed forms, with ``s = log P_S`` and ``softmax`` backward ``P_S * (g - sum(P_S * g))``:
    forward KL ``P_S - P_T``; reverse KL ``g = s - log P_T``; JSD ``g = (s - log M) / 2`` (the terms
    through ``M`` cancel). In place where possible: a few ``(chunk, V)`` tensors at a time.
    """
    dtype = _compute_dtype(teacher, student)
    t, s = teacher.to(dtype), student.to(dtype)
    if temperature != 1.0:
        t, s = t / temperature, s / temperature
    log_t, log_s = F.log_softmax(t, dim=-1), F.log_softmax(s, dim=-1)
    del t, s
    if direction == "forward":
        return log_s.exp_().sub_(log_t.exp_())
    if direction == "reverse":
        g = log_s - log_t
    else:
        g = log_s - torch.logaddexp(log_t, log_s).sub_(math.log(2.0))
        g.mul_(0.5)
    del log_t
    p_s = log_s.exp_()
    return g.sub_((p_s * g).sum(-1, keepdim=True)).mul_(p_s)
