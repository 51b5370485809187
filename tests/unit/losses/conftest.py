"""A small deterministic distillation batch shared by the objective and golden-value tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from pldistill.losses import DistillBatch, audio_token_weights

# Layout of the two samples (sequence length 14): audio token positions, and the logit positions
# whose next token is a response token (the response token rows are one further on).
_AUDIO = ([1, 2, 3, 4, 5, 6], [1, 2, 3, 4])
_RESPONSE = ([11, 12], [10])
B, L, V, HEADS, ES, ET = 2, 14, 32, 2, 8, 12
LA = max(len(a) for a in _AUDIO)


def make_distill_batch(
    seed: int = 1234, dtype: torch.dtype = torch.float64, requires_grad: bool = False
) -> DistillBatch:
    """Random logits, labels, projector outputs and attention-based audio weights, fully determined
    by ``seed`` (``torch.Generator`` on CPU). Student tensors are leaves with ``requires_grad``."""
    g = torch.Generator().manual_seed(seed)
    audio_mask = torch.zeros(B, L, dtype=torch.bool)
    response_mask = torch.zeros(B, L, dtype=torch.bool)
    audio_token_mask = torch.zeros(B, LA, dtype=torch.bool)
    for b in range(B):
        audio_mask[b, _AUDIO[b]] = True
        response_mask[b, _RESPONSE[b]] = True
        audio_token_mask[b, : len(_AUDIO[b])] = True
    labels = torch.full((B, L), -100, dtype=torch.long)
    labels[response_mask] = torch.randint(0, V, (int(response_mask.sum()),), generator=g)

    teacher_logits = 2.0 * torch.randn(B, L, V, generator=g, dtype=torch.float64)
    student_logits = teacher_logits + 1.5 * torch.randn(B, L, V, generator=g, dtype=torch.float64)
    student_audio = torch.randn(B, LA, ES, generator=g, dtype=torch.float64)
    mixing = torch.randn(ES, ET, generator=g, dtype=torch.float64)
    teacher_audio = student_audio @ mixing + 0.8 * torch.randn(B, LA, ET, generator=g, dtype=torch.float64)
    scores = torch.randn(B, HEADS, L, L, generator=g, dtype=torch.float64)
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    attention = scores.masked_fill(~causal, float("-inf")).softmax(-1)
    response_rows = torch.roll(response_mask, 1, dims=1)
    weights = audio_token_weights(attention, audio_mask, response_rows, "attention_last")
    # drawn last, so every value above stays what the golden file pins: CAAD's text-only teacher,
    # close to the audio-aware one (it shares the prompt and response) but not equal
    teacher_text_logits = teacher_logits + 0.7 * torch.randn(B, L, V, generator=g, dtype=torch.float64)

    def leaf(t: torch.Tensor, grad: bool) -> torch.Tensor:
        return t.to(dtype).requires_grad_(grad)

    return DistillBatch(
        student_logits=leaf(student_logits, requires_grad),
        labels=labels,
        response_mask=response_mask,
        audio_mask=audio_mask,
        teacher_logits=leaf(teacher_logits, False),
        teacher_text_logits=leaf(teacher_text_logits, False),
        student_audio=leaf(student_audio, requires_grad),
        teacher_audio=leaf(teacher_audio, False),
        audio_token_mask=audio_token_mask,
        audio_weights=weights.to(dtype),
    )


@pytest.fixture
def make_batch() -> Callable[..., DistillBatch]:
    return make_distill_batch
