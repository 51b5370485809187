"""Relation distillation of LLaVA-KD (Cai et al. 2024, "LLaVA-KD: A Framework of Distilling
Multimodal Large Language Models", RDist), applied to the audio projector outputs.

Used by the ``llava_kd`` baseline of paper table 1. Each side's tokens are L2-normalised and
their self-correlation matrix ``R = Ĥ Ĥᵀ`` (``La x La``, cosine similarity of every token pair)
is compared between teacher and student, so the embedding sizes may differ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["relation_distance"]


def relation_distance(teacher: Tensor, student: Tensor, mask: Tensor | None = None) -> Tensor:
    """``1 - cos(vec(R_T), vec(R_S))`` per sample, ``R`` the token self-correlation over valid tokens.

    The distance is one minus the cosine similarity of the flattened matrices, as in LLaVA-KD's
    RDist: it compares the *pattern* of token relations and ignores their overall scale, which
    differs between a 4096-d and an 896-d embedding space, and it is bounded (``[0, 2]``, ``[0, 1]``
    here in practice) like the CKA term, so the loss weights stay comparable. An MSE between the
    matrices would depend on the number of tokens and on how concentrated each space is.

    Args:
        teacher: ``(B, La, Et)``.
        student: ``(B, La, Es)``.
        mask: ``(B, La)`` bool valid tokens; None means all valid. Padded tokens are zeroed (with
            ``torch.where``, so garbage there has no effect) and drop out of ``R``.

    Returns:
        ``(B,)``, in float32 (float64 if an input is float64).
    """
    if teacher.dim() != 3 or student.dim() != 3 or teacher.shape[:2] != student.shape[:2]:
        raise ValueError(
            f"expected (B, La, Et) and (B, La, Es), got {tuple(teacher.shape)} and {tuple(student.shape)}"
        )
    if mask is None:
        mask = torch.ones(teacher.shape[:2], dtype=torch.bool, device=teacher.device)
    elif mask.dtype != torch.bool or mask.shape != teacher.shape[:2]:
        raise ValueError(
            f"mask must be bool with shape {tuple(teacher.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}"
        )
    dtype = torch.float64 if torch.float64 in (teacher.dtype, student.dtype) else torch.float32
    r_t = _self_correlation(teacher.to(dtype), mask).flatten(1)
    r_s = _self_correlation(student.to(dtype), mask).flatten(1)
    return 1.0 - F.cosine_similarity(r_t, r_s, dim=-1, eps=1e-12)


def _self_correlation(h: Tensor, mask: Tensor) -> Tensor:
    """``(B, La, E) -> (B, La, La)`` cosine similarity of token pairs; zero rows/columns for padding."""
    h = F.normalize(torch.where(mask.unsqueeze(-1), h, 0.0), dim=-1, eps=1e-12)
    return h @ h.transpose(1, 2)
