"""CAAD's contrastive teacher (Contrastive Audio-Aware Distillation, ``../shared/papers/caad-summary.txt``).

The teacher runs twice on the same teacher-forced target: audio-aware (the ordinary input) and
text-only (the same prompt and response without the audio). Contrastive decoding's logits

    z_cd = (1 + a) * z_audio - a * z_text,        a >= 0

push the teacher's distribution away from what it would say from the text alone (its linguistic
prior), towards what the audio adds. CAAD distils ``softmax(z_cd / t)`` into the student with a
forward KL on the response positions; ``a = 0`` is plain forward KL.

Why the teacher cache can hold it exactly: the coefficients ``(1 + a)`` and ``-a`` sum to 1, so the
combination commutes with any affine map, ``lm_head``'s included:
``lm_head((1 + a) h_audio - a h_text) = (1 + a) lm_head(h_audio) - a lm_head(h_text)`` (a bias
``b`` comes out as ``(1 + a) b - a b = b``; Qwen2's ``lm_head`` has none). The cache therefore
stores the text-only path's final hidden states beside the audio-aware ones and the chunked KL
kernel (:func:`.kl_divergence_from_hidden`) takes :func:`contrastive_hidden`: every ``a`` of a
sweep reads the same cache, and no ``(positions, V)`` teacher tensor is ever stored.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["check_contrast", "contrastive_logits", "contrastive_hidden"]


def check_contrast(contrast: float) -> float:
    """``contrast`` as a float if it is a finite number >= 0, else a ValueError (NaN and inf refused:
    either would turn every teacher distribution into NaN)."""
    value = float(contrast)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"caad_contrast must be a finite number >= 0, got {contrast}")
    return value


def contrastive_logits(audio_logits: Tensor, text_logits: Tensor, contrast: float) -> Tensor:
    """``(1 + a) * audio_logits - a * text_logits`` with ``a = contrast``.

    Args:
        audio_logits: ``(..., V)`` the teacher's logits with the audio (``z_audio``).
        text_logits: ``(..., V)`` its logits at the same response positions without it (``z_text``).
        contrast: ``a >= 0``, finite; 0 returns ``audio_logits`` unchanged (a copy-free identity).

    Returns:
        ``(..., V)`` in float32 at least (a bfloat16 ``3 z_audio - 2 z_text`` would lose the small
        differences the contrast is about), detached from neither input (callers detach the teacher).
    """
    a = check_contrast(contrast)
    if audio_logits.shape != text_logits.shape:
        raise ValueError(f"audio and text logits must have the same shape, got {tuple(audio_logits.shape)} "
                         f"and {tuple(text_logits.shape)}")
    if a == 0.0:
        return audio_logits
    dtype = torch.promote_types(audio_logits.dtype, torch.float32)
    return audio_logits.to(dtype) * (1.0 + a) - text_logits.to(dtype) * a


def contrastive_hidden(audio_hidden: Tensor, text_hidden: Tensor, contrast: float) -> Tensor:
    """The same combination of final hidden states ``(..., H)``: ``lm_head`` of the result equals
    :func:`contrastive_logits` of the two paths' logits (module docstring), in exact arithmetic."""
    return contrastive_logits(audio_hidden, text_hidden, contrast)
