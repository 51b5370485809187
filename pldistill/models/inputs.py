"""From clips to model inputs: the paper's prompt layout (audio, then prompt, then response).

One sequence, in Qwen2-Audio-Instruct's chat format::

    <|im_start|>user\\nAudio 1: <|audio_bos|> <|AUDIO|> x N <|audio_eos|>\\n{prompt}<|im_end|>\\n
    <|im_start|>assistant\\n{Label}<|im_end|>

Positions are tagged as *audio* (the N placeholders, which carry projector rows), *response*
(the label tokens and the closing ``<|im_end|>``) or *prompt* (everything else). Logit masks
follow the paper's Z = [Z_a, Z_p, Z_r]: audio logits are the logits *at* audio positions; the
response logits are those that *predict* response tokens (position i predicts token i + 1), so
CE and the response KL use the same positions. Prompt positions enter no loss.

:func:`text_only_inputs` gives CAAD's second teacher path: the same sequence with the audio
placeholders and ``<|audio_bos|>``/``<|audio_eos|>`` removed, and where each of its tokens sits in
the full sequence, so its response rows line up with the audio-aware ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

__all__ = ["DEFAULT_TEMPLATE", "PromptTemplate", "Example", "ModelInputs", "TextOnlyInputs", "collate",
           "candidate_inputs", "prompt_inputs", "pseudo_target_inputs", "response_ids", "text_only_inputs"]


@dataclass(frozen=True)
class PromptTemplate:
    """Text around the audio; ``{labels}`` is replaced by the dataset's label names."""

    before_audio: str = "<|im_start|>user\nAudio 1: <|audio_bos|>"
    after_audio: str = "<|audio_eos|>\n"
    prompt: str = "What is the emotion of this speech? Answer with one word from: {labels}."
    before_response: str = "<|im_end|>\n<|im_start|>assistant\n"
    end_of_response: str = "<|im_end|>"

    def prompt_text(self, labels: Sequence[str]) -> str:
        return self.after_audio + self.prompt.format(labels=", ".join(labels)) + self.before_response


DEFAULT_TEMPLATE = PromptTemplate()


@dataclass
class Example:
    """One clip ready for collation: log-mel ``(n_mels, frames)``, valid frames, label index.

    ``features`` is either the array itself or a zero-argument callable that makes it (a view
    into a packed feature store), so a 30 s window over IEMOCAP never sits in memory densely.
    ``transcript`` and ``lexical`` (congruent / neutral / conflict) come from the manifest when it
    has them (the synthetic corpus does), for text teachers and per-condition scores.
    """

    key: str
    features: np.ndarray | Callable[[], np.ndarray]
    valid_frames: int
    label: int
    num_audio_tokens: int
    transcript: str | None = None
    lexical: str | None = None
    #: False for a clip of a fold's unlabelled part (``data.labelled_fraction``): ``label`` is then the
    #: teacher's answer, which the distillation terms are forced on and the CE never reads.
    labelled: bool = True

    def mel(self) -> np.ndarray:
        return self.features() if callable(self.features) else self.features


@dataclass
class ModelInputs:
    """A padded batch. Shapes: ``B`` clips, ``L`` tokens, ``F`` mel frames."""

    input_ids: Tensor  # (B, L) long, right-padded
    attention_mask: Tensor  # (B, L) long
    input_features: Tensor  # (B, n_mels, F)
    feature_attention_mask: Tensor  # (B, F) long
    audio_mask: Tensor  # (B, L) bool: audio placeholder positions (= audio logit positions)
    response_mask: Tensor  # (B, L) bool: logit positions that predict a response token
    labels: Tensor  # (B, L) long: next-token target where response_mask, else -100
    label_index: Tensor  # (B,) long: class index
    keys: list[str] = field(default_factory=list)
    #: (B, L) bool: the audio placeholders and the <|audio_bos|>/<|audio_eos|> markers around them
    #: (what :func:`text_only_inputs` removes); None: the placeholders alone.
    audio_span_mask: Tensor | None = None
    #: (B,) bool: whether the clip's response is its gold label (CE reads it) or the teacher's answer
    #: for an unlabelled clip (only the teacher's terms read it); None: every clip is labelled.
    labelled: Tensor | None = None

    def to(self, device: torch.device | str) -> ModelInputs:
        moved = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()}
        return ModelInputs(**moved)

    @property
    def response_token_mask(self) -> Tensor:
        """``(B, L)`` bool: positions that hold response tokens (rows for the attention weights)."""
        rows = torch.zeros_like(self.response_mask)
        rows[:, 1:] = self.response_mask[:, :-1]
        return rows

    @property
    def label_token_mask(self) -> Tensor:
        """``(B, L)`` bool: the response rows of the label's own tokens, without the closing
        ``<|im_end|>`` (the last response token): AwCKA's attention rows (eq. 1, "e.g. Happy")."""
        rows = self.response_token_mask
        last = rows.shape[1] - 1 - rows.flip(1).to(torch.int8).argmax(1)  # each row's last response token
        out = rows.clone()
        out[torch.arange(rows.shape[0], device=rows.device)[rows.any(1)], last[rows.any(1)]] = False
        return out

    @property
    def ce_mask(self) -> Tensor:
        """``(B, L)`` bool: the response positions the CE reads, those of labelled clips."""
        return self.response_mask if self.labelled is None else self.response_mask & self.labelled[:, None]

    @property
    def prompt_mask(self) -> Tensor:
        return self.attention_mask.bool() & ~self.audio_mask & ~self.response_mask

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


class _Encoder:
    """Token ids of the fixed template pieces, computed once per (tokenizer, template, labels)."""

    def __init__(self, tokenizer, template: PromptTemplate, labels: Sequence[str]) -> None:
        from pldistill.models.tokenizer import AUDIO_BOS, AUDIO_EOS, AUDIO_TOKEN

        enc = lambda s: list(tokenizer(s, add_special_tokens=False)["input_ids"])  # noqa: E731
        self.before = enc(template.before_audio)
        self.after = enc(template.prompt_text(labels))
        self.responses = [enc(lab + template.end_of_response) for lab in labels]
        self._enc, self._end = enc, template.end_of_response
        self._free: dict[str, list[int]] = {}  # pseudo targets seen: at most 27 per label
        self.audio_id = int(tokenizer.convert_tokens_to_ids(AUDIO_TOKEN))
        self.pad_id = int(tokenizer.pad_token_id)
        # a tokenizer without them gives None or its unknown id; the unknown id never marks audio
        markers = (tokenizer.convert_tokens_to_ids(t) for t in (AUDIO_BOS, AUDIO_EOS))
        self.marker_ids = tuple(int(i) for i in markers if i is not None and i != tokenizer.unk_token_id)

    def answer(self, text: str) -> list[int]:
        """Token ids of a free answer and the closing ``<|im_end|>``, tokenized as a label's response is."""
        ids = self._free.get(text)
        if ids is None:
            ids = self._free[text] = self._enc(text + self._end)
        return ids

    def sequence(self, n_audio: int, response: int | list[int] | None) -> tuple[list[int], int, int]:
        """ids, start of audio, start of response. ``response``: a label index, the response's token
        ids, or None (the prompt alone, no response)."""
        ids = self.before + [self.audio_id] * n_audio + self.after
        tail = [] if response is None else self.responses[response] if isinstance(response, int) else response
        return ids + tail, len(self.before), len(ids)


#: Per (tokenizer, template, labels). The tokenizer itself is kept in the entry and compared by
#: identity: an ``id()`` alone could be reused by another tokenizer after the first is freed.
_ENCODERS: dict[tuple[int, PromptTemplate, tuple[str, ...]], tuple[object, _Encoder]] = {}


def _encoder(tokenizer, template: PromptTemplate, labels: Sequence[str]) -> _Encoder:
    key = (id(tokenizer), template, tuple(labels))
    entry = _ENCODERS.get(key)
    if entry is None or entry[0] is not tokenizer:
        entry = _ENCODERS[key] = (tokenizer, _Encoder(tokenizer, template, labels))
    return entry[1]


def collate(examples: Sequence[Example], tokenizer, labels: Sequence[str],
            template: PromptTemplate = DEFAULT_TEMPLATE) -> ModelInputs:
    """Pad a list of examples into :class:`ModelInputs` with the response being each true label."""
    return _collate(examples, [ex.label for ex in examples], tokenizer, labels, template)


def candidate_inputs(examples: Sequence[Example], tokenizer, labels: Sequence[str],
                     template: PromptTemplate = DEFAULT_TEMPLATE) -> ModelInputs:
    """Every example repeated once per label (example-major), for closed-set scoring."""
    rep = [ex for ex in examples for _ in labels]
    return _collate(rep, [c for _ in examples for c in range(len(labels))], tokenizer, labels, template)


def prompt_inputs(examples: Sequence[Example], tokenizer, labels: Sequence[str],
                  template: PromptTemplate = DEFAULT_TEMPLATE) -> ModelInputs:
    """Each example's sequence up to the response (the prefix every candidate answer shares).

    No response positions: ``response_mask`` is all False; ``label_index`` holds the true labels.
    """
    return _collate(examples, [ex.label for ex in examples], tokenizer, labels, template, with_response=False)


def pseudo_target_inputs(examples: Sequence[Example], tokenizer, labels: Sequence[str], targets: Mapping[str, str],
                         template: PromptTemplate = DEFAULT_TEMPLATE) -> ModelInputs:
    """:func:`collate`'s batch with each clip's response being ``targets[key]`` (CAAD's pseudo target, a
    free answer) instead of its label: the same audio and prompt layout, position for position, only
    the response differs. ``label_index`` keeps the true labels."""
    enc = _encoder(tokenizer, template, labels)
    return _collate(examples, [ex.label for ex in examples], tokenizer, labels, template,
                    answers=[enc.answer(targets[ex.key]) for ex in examples])


def response_ids(tokenizer, labels: Sequence[str], template: PromptTemplate = DEFAULT_TEMPLATE) -> list[list[int]]:
    """Token ids of each label's response (the label and the closing ``<|im_end|>``), in label order."""
    return [list(r) for r in _encoder(tokenizer, template, labels).responses]


def _collate(examples: Sequence[Example], responses: Sequence[int], tokenizer, labels: Sequence[str],
             template: PromptTemplate, with_response: bool = True,
             answers: Sequence[list[int]] | None = None) -> ModelInputs:
    """``responses``: label indices (``label_index``); ``answers``: response token ids that replace them."""
    enc = _encoder(tokenizer, template, labels)
    tails: Sequence[int | list[int] | None] = answers if answers is not None else \
        responses if with_response else [None] * len(examples)
    seqs = [enc.sequence(ex.num_audio_tokens, t) for ex, t in zip(examples, tails)]
    b, length = len(seqs), max(len(s[0]) for s in seqs)
    input_ids = torch.full((b, length), enc.pad_id, dtype=torch.long)
    attention = torch.zeros((b, length), dtype=torch.long)
    audio = torch.zeros((b, length), dtype=torch.bool)
    response = torch.zeros((b, length), dtype=torch.bool)
    targets = torch.full((b, length), -100, dtype=torch.long)
    for i, ((ids, a0, r0), ex) in enumerate(zip(seqs, examples)):
        n = len(ids)
        input_ids[i, :n] = torch.tensor(ids)
        attention[i, :n] = 1
        audio[i, a0:a0 + ex.num_audio_tokens] = True
        response[i, r0 - 1:n - 1] = True  # logits at r0-1 .. n-2 predict tokens r0 .. n-1
        targets[i, r0 - 1:n - 1] = input_ids[i, r0:n]
    markers = torch.isin(input_ids, torch.tensor(enc.marker_ids, dtype=torch.long)) & attention.bool()
    feats = torch.from_numpy(np.stack([ex.mel() for ex in examples])).float()
    fmask = torch.zeros((b, feats.shape[-1]), dtype=torch.long)
    for i, ex in enumerate(examples):
        fmask[i, :ex.valid_frames] = 1
    return ModelInputs(input_ids=input_ids, attention_mask=attention, input_features=feats,
                       feature_attention_mask=fmask, audio_mask=audio, response_mask=response, labels=targets,
                       label_index=torch.tensor(responses, dtype=torch.long),
                       keys=[ex.key for ex in examples], audio_span_mask=audio | markers,
                       labelled=None if all(ex.labelled for ex in examples) else
                       torch.tensor([ex.labelled for ex in examples], dtype=torch.bool))


@dataclass
class TextOnlyInputs:
    """A batch without its audio (CAAD's text-only teacher path). Shapes: ``B`` clips, ``Lt`` tokens.

    Every kept token keeps its order, so the response tokens, and the logit positions that predict
    them, are those of the full sequence: row-major, the ``True`` entries of ``response_mask`` here
    and in the full batch are the same positions, one to one (``positions`` says which).
    """

    input_ids: Tensor  # (B, Lt) long, right-padded (padding ids are never attended to: causal, masked)
    attention_mask: Tensor  # (B, Lt) long
    response_mask: Tensor  # (B, Lt) bool: logit positions that predict a response token
    labels: Tensor  # (B, Lt) long: next-token target where response_mask, else -100
    positions: Tensor  # (B, Lt) long: each token's position in the full sequence; -1 on padding

    def to_full(self, values: Tensor, length: int) -> Tensor:
        """``(B, Lt, ...)`` values of this path moved to the full layout ``(B, length, ...)``: the
        response rows at their full positions, zeros everywhere else."""
        out = values.new_zeros((values.shape[0], length, *values.shape[2:]))
        rows, cols = self.response_mask.nonzero(as_tuple=True)
        out[rows, self.positions[rows, cols]] = values[rows, cols]
        return out


def text_only_inputs(inputs: ModelInputs) -> TextOnlyInputs:
    """``inputs`` with the audio placeholders and ``<|audio_bos|>``/``<|audio_eos|>`` removed: the
    same prompt and response, re-packed to the left and right-padded (as the teacher would see the
    text alone). The response rows stay aligned with ``inputs``' (:class:`TextOnlyInputs`)."""
    span = inputs.audio_span_mask if inputs.audio_span_mask is not None else inputs.audio_mask
    keep = inputs.attention_mask.bool() & ~span
    lengths = keep.sum(-1)
    b, lt = keep.shape[0], int(lengths.max()) if keep.numel() else 0
    slots = torch.arange(lt, device=keep.device)[None, :] < lengths[:, None]  # row-major, like keep
    ids = torch.zeros((b, lt), dtype=inputs.input_ids.dtype, device=keep.device)
    response = torch.zeros((b, lt), dtype=torch.bool, device=keep.device)
    labels = torch.full((b, lt), -100, dtype=inputs.labels.dtype, device=keep.device)
    positions = torch.full((b, lt), -1, dtype=torch.long, device=keep.device)
    ids[slots], response[slots], labels[slots] = inputs.input_ids[keep], inputs.response_mask[keep], inputs.labels[keep]
    positions[slots] = keep.nonzero(as_tuple=True)[1]
    if int(response.sum()) != int(inputs.response_mask.sum()):
        raise ValueError("the audio span overlaps the response: the text-only path would lose response positions")
    return TextOnlyInputs(input_ids=ids, attention_mask=slots.long(), response_mask=response, labels=labels,
                          positions=positions)
