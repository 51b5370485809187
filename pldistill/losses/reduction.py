"""How a per-position loss is reduced to one number: over the batch's positions, or per sample.

``batch_mean`` is what the terms did first: the mean over every masked position of the batch. A
batch of clips with different numbers of positions then weighs long clips more than short ones,
so it is not the same as accumulating the clips one at a time. ``sample_mean`` and
``sample_sum`` reduce within each sample first (mean, or sum as in paper eq. 7 for the
cross-entropy) and then take the mean over the ``B`` samples, so a batch of ``B`` clips gives
exactly the mean of the ``B`` single-clip losses and, by linearity, the mean of their gradients:
the paper's batch 1 x accumulation 16 runs as one batch of 16 with the same mathematics.

A sample with no masked position contributes 0 to the mean over samples (the single-clip loss of
such a clip is 0 too), and still counts in ``B``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["REDUCTIONS", "check_reduction", "position_weights"]

#: Reductions accepted by the loss functions' ``reduction`` keyword.
REDUCTIONS = ("batch_mean", "sample_mean", "sample_sum")


def check_reduction(reduction: str) -> None:
    """Raises ``ValueError`` naming the valid reductions."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")


def position_weights(mask: Tensor, reduction: str, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(B, L)`` weights ``w`` such that the reduced loss is ``sum(w * per_position_loss)``.

    Zero outside ``mask``. Inside: ``1 / n`` (``batch_mean``, ``n`` masked positions in the whole
    batch), ``1 / (B * n_b)`` (``sample_mean``, ``n_b`` those of the position's sample) or ``1 / B``
    (``sample_sum``).

    Args:
        mask: ``(B, L)`` bool.
        reduction: one of :data:`REDUCTIONS`.
        dtype: of the result.
    """
    check_reduction(reduction)
    m = mask.to(dtype)
    if reduction == "batch_mean":
        return m / m.sum().clamp_min(1)
    per_sample = m.sum(-1, keepdim=True).clamp_min(1) if reduction == "sample_mean" else torch.ones_like(m[:, :1])
    return m / (per_sample * mask.shape[0])
