"""Closed-set scoring: the predicted label is the one whose token sequence is most likely.

For each clip every label's response (label tokens and the closing ``<|im_end|>``) is scored by
the sum of its token log-probabilities under the model; the arg-max is the prediction. The encoder
runs once per clip (or its output is read from the teacher cache), and so does the prompt: the
candidates are packed behind it in the same row and share its keys and values under a 4-D mask
(:meth:`~pldistill.models.audiolm.AudioLMHead.score_responses`), instead of C full sequences.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from pldistill.models.audiolm import AudioLMHead, encode_audio
from pldistill.models.inputs import DEFAULT_TEMPLATE, Example, PromptTemplate, prompt_inputs, response_ids

__all__ = ["score_labels", "predict"]


@torch.no_grad()
def score_labels(head: AudioLMHead, audio_tower: torch.nn.Module, examples: Sequence[Example], tokenizer,
                 labels: Sequence[str], *, vocab: int, template: PromptTemplate = DEFAULT_TEMPLATE,
                 batch_size: int = 16) -> Tensor:
    """Log-likelihood of each label for each example: ``(N, C)`` float32.

    ``audio_tower`` is the encoder, or a ``TeacherCache`` holding its output for these examples.
    Every call of ``head`` is one forward per batch on every rank (under FSDP a forward is a collective).
    """
    device = next(head.parameters()).device
    ids = response_ids(tokenizer, labels, template)
    lengths = torch.tensor([len(r) for r in ids], device=device)
    responses = torch.nn.utils.rnn.pad_sequence([torch.tensor(r) for r in ids], batch_first=True).to(device)
    out = []
    for start in range(0, len(examples), batch_size):
        chunk = list(examples[start:start + batch_size])
        inputs = prompt_inputs(chunk, tokenizer, labels, template).to(device)
        if hasattr(audio_tower, "encoded"):  # a TeacherCache: the encoder output computed once per sweep
            enc = audio_tower.encoded([ex.key for ex in chunk], device)
        else:
            enc = encode_audio(audio_tower, inputs.input_features, inputs.feature_attention_mask)
        n_audio = int(enc.num_tokens.max())
        out.append(head.score_responses(enc.features[:, :n_audio], enc.num_tokens, inputs.input_ids,
                                        inputs.attention_mask, responses, lengths, vocab))
    return torch.cat(out).cpu() if out else torch.zeros((0, len(labels)))


def predict(scores: Tensor) -> list[int]:
    return scores.argmax(-1).tolist()
