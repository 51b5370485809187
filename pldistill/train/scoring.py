"""Closed-set scoring: the predicted label is the one whose token sequence is most likely.

For each clip every label's response (label tokens and the closing ``<|im_end|>``) is scored by
the sum of its token log-probabilities under the model; the arg-max is the prediction. The
encoder runs once per clip and its output is repeated for the candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from pldistill.models.audiolm import AudioLMHead, encode_audio
from pldistill.models.inputs import DEFAULT_TEMPLATE, Example, PromptTemplate, candidate_inputs

__all__ = ["score_labels", "predict"]


@torch.no_grad()
def score_labels(head: AudioLMHead, audio_tower: torch.nn.Module, examples: Sequence[Example], tokenizer,
                 labels: Sequence[str], *, vocab: int, template: PromptTemplate = DEFAULT_TEMPLATE,
                 batch_size: int = 16) -> Tensor:
    """Log-likelihood of each label for each example: ``(N, C)`` float32.

    ``audio_tower`` is the encoder, or a ``TeacherCache`` holding its output for these examples.
    """
    out = []
    n_labels = len(labels)
    for start in range(0, len(examples), batch_size):
        chunk = list(examples[start:start + batch_size])
        inputs = candidate_inputs(chunk, tokenizer, labels, template)
        device = next(head.parameters()).device
        inputs = inputs.to(device)
        if hasattr(audio_tower, "encoded"):  # a TeacherCache: the encoder output computed once per sweep
            enc = audio_tower.encoded([ex.key for ex in chunk], device)
        else:
            enc = encode_audio(audio_tower, inputs.input_features[::n_labels], inputs.feature_attention_mask[::n_labels])
        feats = enc.features.repeat_interleave(n_labels, 0)
        ntok = enc.num_tokens.repeat_interleave(n_labels, 0)
        _, _, logits = head(feats, ntok, inputs.input_ids, inputs.attention_mask, vocab)
        logp = torch.log_softmax(logits.float(), dim=-1)
        tgt = inputs.labels.clamp_min(0)
        tok = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1) * inputs.response_mask
        out.append(tok.sum(-1).view(len(chunk), n_labels))
    return torch.cat(out).cpu()


def predict(scores: Tensor) -> list[int]:
    return scores.argmax(-1).tolist()
