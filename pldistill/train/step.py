"""One distillation forward: encoder once, teacher (frozen, no grad), student; then the objective.

This is the only place that turns model outputs into the loss library's ``DistillBatch``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pldistill.losses import DistillBatch, ObjectiveOutput, WeightedSumObjective, audio_token_weights
from pldistill.models.audiolm import AudioLMHead, capture_attention, encode_audio
from pldistill.models.inputs import ModelInputs

__all__ = ["DistillModels", "distill_step", "attention_layers_for"]


def attention_layers_for(weighting: str) -> str | None:
    """Which teacher layers' attention a weighting variant needs (None: no attention)."""
    return {"uniform": None, "attention_layers": "all"}.get(weighting, "last")


@dataclass
class DistillModels:
    """What a step needs. ``student`` may be a DDP/FSDP wrapper around an :class:`AudioLMHead`."""

    audio_tower: nn.Module
    teacher: AudioLMHead | None
    student: nn.Module
    vocab: int
    objective: WeightedSumObjective
    weighting: str = "attention_last"
    sharpen_p: float = 2.0


def distill_step(m: DistillModels, inputs: ModelInputs) -> ObjectiveOutput:
    """Loss (with every term) for one batch; gradients flow into the student only."""
    with torch.no_grad():
        enc = encode_audio(m.audio_tower, inputs.input_features, inputs.feature_attention_mask)
    n_audio = int(enc.num_tokens.max())
    feats, ntok = enc.features[:, :n_audio], enc.num_tokens
    student_audio, _, student_logits = m.student(feats, ntok, inputs.input_ids, inputs.attention_mask, m.vocab)
    batch = DistillBatch(student_logits=student_logits, labels=inputs.labels, response_mask=inputs.response_mask,
                         audio_mask=inputs.audio_mask, student_audio=student_audio,
                         audio_token_mask=enc.token_mask[:, :n_audio])
    if m.objective.needs_teacher:
        layers = attention_layers_for(m.weighting) if "cka" in m.objective.weights else None
        with torch.no_grad():
            if layers is None:
                teacher_audio, _, teacher_logits = m.teacher(feats, ntok, inputs.input_ids, inputs.attention_mask,
                                                             m.vocab)
                weights = None
            else:
                lm = m.teacher.core.language_model
                with capture_attention(lm, inputs.attention_mask, layers) as attn:
                    teacher_audio, _, teacher_logits = m.teacher(feats, ntok, inputs.input_ids,
                                                                 inputs.attention_mask, m.vocab)
                weights = audio_token_weights(attn if layers == "all" else attn[-1], inputs.audio_mask,
                                              inputs.response_token_mask, m.weighting, p=m.sharpen_p)
        batch.teacher_logits = teacher_logits
        batch.teacher_audio = teacher_audio
        if "cka" in m.objective.weights:
            batch.audio_weights = weights if weights is not None else audio_token_weights(
                None, inputs.audio_mask, inputs.response_token_mask, "uniform")
    return m.objective(batch)
