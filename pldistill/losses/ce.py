"""Cross-entropy of the student's response logits against the labels (paper eq. 7).

``reduction="sample_sum"`` is eq. 7 itself: ``-sum_i log P_S(i, y_i)`` over one sample's response
tokens, averaged over the samples of a batch. ``batch_mean`` (the default, what the objective has
used so far) is the mean over every response token of the batch; ``sample_mean`` the mean within
each sample, then over samples. See :mod:`.reduction`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .reduction import check_reduction, position_weights

__all__ = ["cross_entropy"]


def cross_entropy(student_logits: Tensor, labels: Tensor, mask: Tensor, *, reduction: str = "batch_mean",
                  share: float = 1.0) -> Tensor:
    """Eq. 7 over the positions where ``mask`` is true, in fp32 (fp64 for fp64 logits).

    Only the masked rows are read (gathered first), so other positions may hold anything.

    Args:
        student_logits: ``(B, L, V)``, the shared vocabulary (padding rows sliced away).
        labels: ``(B, L)`` long, the target token of the logit at each position (shifted); read only
            where ``mask``, and a valid token id there (``-100`` would be ignored by ``batch_mean``
            but counted by the per-sample reductions).
        mask: ``(B, L)`` bool, the response positions.
        reduction: one of :data:`.REDUCTIONS`.
        share: ``rho`` in (0, 1]: the per-sample reductions divide by ``B * rho`` instead of ``B``, the
            expected number of labelled samples when ``mask`` leaves out the unlabelled ones (their
            rows hold the teacher's answer), so the CE of a batch with a labelled share ``rho`` weighs
            what a fully labelled batch's does. Still a mean of per-sample values (each divided by
            ``rho``), so a batch of B equals B accumulated batches of one. ``batch_mean`` needs 1.

    Returns:
        A scalar; 0 (connected to ``student_logits``, zero gradient) with no masked position.
    """
    check_reduction(reduction)
    if not 0.0 < share <= 1.0 or (share != 1.0 and reduction == "batch_mean"):
        raise ValueError(f"share must be in (0, 1] (1 with batch_mean), got {share} with {reduction}")
    if student_logits.dim() != 3 or mask.dtype != torch.bool or mask.shape != student_logits.shape[:2] \
            or labels.shape != mask.shape:
        raise ValueError(f"expected (B, L, V) logits with (B, L) bool mask and labels, got "
                         f"{tuple(student_logits.shape)}, {mask.dtype} {tuple(mask.shape)}, {tuple(labels.shape)}")
    rows = mask.nonzero(as_tuple=True)
    logits = student_logits[rows]
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    if logits.shape[0] == 0:
        return logits.to(dtype).sum()
    if reduction == "batch_mean":  # the objective's original arithmetic, so its numbers do not move
        return F.cross_entropy(logits.to(dtype), labels[rows])
    per_row = F.cross_entropy(logits.to(dtype), labels[rows], reduction="none")
    return (per_row * position_weights(mask, reduction, dtype)[rows]).sum() / share
