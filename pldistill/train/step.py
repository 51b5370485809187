"""One distillation forward: encoder once, teacher (frozen, no grad), student; then the objective.

This is the only place that turns model outputs into the loss library's ``DistillBatch``. With a
teacher cache (``teacher_mode: cached``) the encoder and teacher outputs are read from it instead
of computed: the student runs only its projector and LLM, and the KL terms recompute the teacher's
logits from its cached hidden states and ``lm_head`` weight (``kl_divergence_from_hidden``).

CAAD's objective also reads the teacher's text-only path (``text_only_inputs``: no audio, same
prompt and response): online it is a second teacher forward, cached it is one more stored array.

The teacher is forced on each clip's pseudo target (CAAD's ``pseudo_target``). Under ``label`` that
is the gold answer and one student sequence serves every term. Under ``metadata`` (the gold word plus
the clip's prosody, :mod:`pldistill.train.pseudo_target`) the step also gets the pseudo-target batch:
the student runs on both sequences in one forward, CE reads the gold one, every other term the
pseudo one beside the teacher's (:func:`_split_step`).

The student's logits are never materialised when the objective allows it (every term that reads
them is fusable, ``WeightedSumObjective.fusable``): the step hands the objective the student's
final hidden states and ``lm_head`` weight instead, and the logit terms compute the logits chunk by
chunk (:mod:`pldistill.losses.fused_objective`). Same values and gradients.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pldistill.losses import (
    DistillBatch,
    ObjectiveOutput,
    WeightedSumObjective,
    attention_layers_for,
    audio_token_weights,
    audio_weights_from_rows,
)
from pldistill.models.audiolm import AudioLMHead, EncodedAudio, capture_attention, encode_audio
from pldistill.models.inputs import ModelInputs, text_only_inputs
from pldistill.train.parallel import is_sharded
from pldistill.train.teacher_cache import CachedTeacherBatch, TeacherCache

__all__ = ["COMPILE_MODES", "DistillModels", "compile_student", "distill_step"]

#: ``train.compile``: ``off`` (eager) or a ``torch.compile`` mode.
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


@dataclass
class DistillModels:
    """What a step needs. ``student`` may be a DDP/FSDP wrapper around an :class:`AudioLMHead`.

    Online: ``audio_tower`` and ``teacher`` are set. Cached: ``cache`` is set and the other two
    may be None (they are not run).
    """

    audio_tower: nn.Module | None
    teacher: AudioLMHead | None
    student: nn.Module
    vocab: int
    objective: WeightedSumObjective
    weighting: str = "attention_last"
    sharpen_p: float = 2.0
    cache: TeacherCache | None = None
    #: AwCKA's attention rows: the label tokens, plus the closing <|im_end|> when true.
    awcka_end_row: bool = False
    #: Fuse the student's lm_head with the logit terms when the objective and the wrapper allow it
    #: (:func:`_fused_lm_head`); False always materialises the logits (today's path, for comparison).
    fused_logits: bool = True


def distill_step(m: DistillModels, inputs: ModelInputs, pseudo: ModelInputs | None = None) -> ObjectiveOutput:
    """Loss (with every term) for one batch; gradients flow into the student only.

    ``pseudo``: the same clips forced on their pseudo target instead of the gold answer
    (:func:`~pldistill.models.inputs.pseudo_target_inputs`; CAAD's ``pseudo_target: metadata``). The
    teacher then runs (or is read) on ``pseudo`` alone, and the student on both sequences: its CE
    stays on the gold answer, and every other term reads its rows forced on the pseudo target,
    whose response positions align one to one with the teacher's (:func:`_split_step`). Ignored by
    an objective without a teacher (its CE is all there is).
    """
    cached = m.cache.batch(inputs.keys, inputs.input_ids.device) if m.cache is not None else None
    if cached is not None:
        enc = cached.encoded
    else:
        assert m.audio_tower is not None, "online mode needs the audio tower"
        with torch.no_grad():
            enc = encode_audio(m.audio_tower, inputs.input_features, inputs.feature_attention_mask)
    n_audio = int(enc.num_tokens.max())
    feats = enc.features[:, :n_audio]
    lm_head = _fused_lm_head(m)
    if pseudo is not None and m.objective.needs_teacher:
        return _split_step(m, inputs, pseudo, feats, enc, cached, lm_head)
    batch = _student_batch(inputs, _student_forward(m, feats, enc.num_tokens, [inputs], lm_head)[0], enc, lm_head)
    if not m.objective.needs_teacher:
        return m.objective(batch)
    _add_teacher(m, batch, inputs, feats, enc, cached)
    return m.objective(batch)


def _split_step(m: DistillModels, inputs: ModelInputs, pseudo: ModelInputs, feats: Tensor, enc: EncodedAudio,
                cached: CachedTeacherBatch | None, lm_head: Tensor | None) -> ObjectiveOutput:
    """CE on the student forced on the gold answer, every other term on the student forced on the pseudo
    target (with the teacher's paths forced on it too); one student forward serves both.

    The audio rows (``kl_audio``, CKA's projector rows) come before the response, so under the causal
    mask they are the same in both sequences (to float rounding): they are read from the pseudo rows,
    with the teacher's, so the teacher runs only on the pseudo target (CAAD's Stage 1: one pass per
    path). Each term is normalised per clip whichever rows it reads, so a batch of B clips still
    equals B accumulated batches of one.
    """
    if pseudo.keys != inputs.keys or not torch.equal(pseudo.audio_mask[:, :inputs.audio_mask.shape[1]],
                                                     inputs.audio_mask[:, :pseudo.audio_mask.shape[1]]):
        raise ValueError("the pseudo-target batch must hold the same clips, in the same layout, as the batch")
    gold_out, pseudo_out = _student_forward(m, feats, enc.num_tokens, [inputs, pseudo], lm_head)
    ce_objective, rest_objective = _ce_and_rest(m.objective)
    batch = _student_batch(pseudo, pseudo_out, enc, lm_head)
    _add_teacher(m, batch, pseudo, feats, enc, cached)
    parts = [ce_objective(_student_batch(inputs, gold_out, enc, lm_head)), rest_objective(batch)]
    terms = {k: v for part in parts for k, v in part.terms.items()}
    return ObjectiveOutput(total=parts[0].total + parts[1].total,
                           terms={name: terms[name] for name in m.objective.weights})


def _ce_and_rest(objective: WeightedSumObjective) -> tuple[WeightedSumObjective, WeightedSumObjective]:
    """``objective`` as two objectives, its CE term and the others, with the same weights and options."""
    part = lambda keep: WeightedSumObjective(  # noqa: E731
        objective.name, {t: w for t, w in objective.weights.items() if (t == "ce") == keep}, objective.options)
    return part(True), part(False)


_StudentOut = tuple[Tensor | None, Tensor, Tensor | None]


def _student_forward(m: DistillModels, feats: Tensor, num_tokens: Tensor, rows: list[ModelInputs],
                     lm_head: Tensor | None) -> list[_StudentOut]:
    """The student's projector rows, final hidden states and (unfused) logits for each batch of ``rows``
    (the same clips, each with its own response), in one forward: the batches are stacked along the
    batch axis, right-padded to the longest (padding is masked, and causal attention never reads it)."""
    vocab = m.vocab if lm_head is None else None
    if len(rows) == 1:
        return [m.student(feats, num_tokens, rows[0].input_ids, rows[0].attention_mask, vocab)]
    length = max(r.input_ids.shape[1] for r in rows)
    pad = lambda x: torch.nn.functional.pad(x, (0, length - x.shape[1]))  # noqa: E731  (pad id 0: masked)
    audio, hidden, logits = m.student(feats.repeat(len(rows), 1, 1), num_tokens.repeat(len(rows)),
                                      torch.cat([pad(r.input_ids) for r in rows]),
                                      torch.cat([pad(r.attention_mask) for r in rows]), vocab)
    b = feats.shape[0]
    return [(None if audio is None else audio[k * b:(k + 1) * b], hidden[k * b:(k + 1) * b, :r.input_ids.shape[1]],
             None if logits is None else logits[k * b:(k + 1) * b, :r.input_ids.shape[1]])
            for k, r in enumerate(rows)]


def _student_batch(inputs: ModelInputs, out: _StudentOut, enc: EncodedAudio,
                   lm_head: Tensor | None) -> DistillBatch:
    """The student's side of the loss batch for the sequences of ``inputs`` (hidden states when fused)."""
    student_audio, hidden, student_logits = out
    n_audio = int(enc.num_tokens.max())
    return DistillBatch(student_logits=student_logits, labels=inputs.labels, response_mask=inputs.response_mask,
                        audio_mask=inputs.audio_mask, ce_mask=None if inputs.labelled is None else inputs.ce_mask,
                        student_audio=student_audio,
                        audio_token_mask=enc.token_mask[:, :n_audio],
                        student_hidden=hidden if lm_head is not None else None, student_lm_head=lm_head)


def _add_teacher(m: DistillModels, batch: DistillBatch, inputs: ModelInputs, feats: Tensor, enc: EncodedAudio,
                 cached: CachedTeacherBatch | None) -> None:
    """The teacher's side of ``batch``, forced on ``inputs``' responses: read from the cache or run now."""
    wants_weights = m.objective.needs_audio_weights
    if cached is not None:
        assert m.cache is not None
        if m.cache.lm_head_bias is not None:
            raise ValueError("cached teacher mode does not support an lm_head with a bias (Qwen2 has none)")
        batch.teacher_hidden = cached.teacher_hidden(inputs.audio_mask, inputs.response_mask)
        batch.teacher_lm_head = m.cache.lm_head_on(batch.teacher_hidden.device)
        batch.teacher_audio = cached.teacher_audio[:, :feats.shape[1]]
        if m.objective.needs_text_teacher:
            batch.teacher_text_hidden = cached.teacher_text_hidden(inputs.response_mask)
        weights = audio_weights_from_rows(cached.attention, m.weighting, p=m.sharpen_p,
                                          end_row=m.awcka_end_row) if wants_weights else None
    else:
        batch.teacher_audio, batch.teacher_logits, weights = _online_teacher(m, inputs, feats, enc, wants_weights)
        if m.objective.needs_text_teacher:
            batch.teacher_text_logits = _online_text_teacher(m, inputs)
    if wants_weights:
        batch.audio_weights = weights


def _fused_lm_head(m: DistillModels) -> Tensor | None:
    """The student's ``lm_head`` weight cut to the vocabulary when the fused path applies, else None.

    It applies when the objective's logit terms are all fusable and the weight may be read outside
    the student's forward: not under FSDP (a shard there), and under DDP only frozen (DDP reduces
    what its forward used; LoRA leaves the head frozen). A head with a bias keeps today's path.
    """
    if not (m.fused_logits and m.objective.fusable):
        return None
    student, ddp = m.student, False
    while isinstance(student, (nn.parallel.DistributedDataParallel, _CompiledStudent)):
        ddp |= isinstance(student, nn.parallel.DistributedDataParallel)
        student = student.module
    if not isinstance(student, AudioLMHead) or is_sharded(student):
        return None
    head = student.model.lm_head
    if getattr(head, "bias", None) is not None or (head.weight.requires_grad and ddp):
        return None
    weight: Tensor = head.weight[:m.vocab]
    return weight


@torch.no_grad()
def _online_teacher(m: DistillModels, inputs: ModelInputs, feats: Tensor, enc: EncodedAudio,
                    wants_weights: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """Teacher projector rows, logits and (for CKA) the audio-token weights, run now."""
    assert m.teacher is not None, "online mode needs the teacher"
    layers = attention_layers_for(m.weighting) if wants_weights else None
    args = (feats, enc.num_tokens, inputs.input_ids, inputs.attention_mask, m.vocab)
    if layers is None:
        teacher_audio, _, teacher_logits = m.teacher(*args)
        weights = audio_token_weights(None, inputs.audio_mask, _rows(m, inputs), "uniform") \
            if wants_weights else None
    else:
        with capture_attention(m.teacher.core.language_model, inputs.attention_mask, layers) as attn:
            teacher_audio, _, teacher_logits = m.teacher(*args)
        weights = audio_token_weights(attn if layers == "all" else attn[-1], inputs.audio_mask,
                                      _rows(m, inputs), m.weighting, p=m.sharpen_p)
    assert teacher_audio is not None and teacher_logits is not None
    return teacher_audio, teacher_logits, weights


def _rows(m: DistillModels, inputs: ModelInputs) -> Tensor:
    """The response rows whose attention AwCKA's weights read (eq. 1)."""
    return inputs.response_token_mask if m.awcka_end_row else inputs.label_token_mask


@torch.no_grad()
def _online_text_teacher(m: DistillModels, inputs: ModelInputs) -> Tensor:
    """The teacher's logits without the audio (CAAD), at the response positions of ``inputs``' layout."""
    assert m.teacher is not None, "online mode needs the teacher"
    text = text_only_inputs(inputs)
    _, _, logits = m.teacher(None, None, text.input_ids, text.attention_mask, m.vocab)
    assert logits is not None
    return text.to_full(logits, inputs.input_ids.shape[1])


def compile_student(student: nn.Module, mode: str) -> nn.Module:
    """``student`` (an :class:`AudioLMHead`, maybe in DDP) with its forward, and so its backward, under
    ``torch.compile(mode=mode)``; ``off`` returns it unchanged. Eager is the fallback: a first call
    that fails to compile warns once and runs, like every later call, eagerly."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; valid: {', '.join(COMPILE_MODES)}")
    return student if mode == "off" else _CompiledStudent(student, mode)


class _CompiledStudent(nn.Module):
    """The student's forward through ``torch.compile``, or eagerly once compiling has failed.

    ``module`` is the student itself (its parameters keep their names); the compiled callable is
    kept out of the module tree. Shapes vary from batch to batch (bucketing keeps their number
    small), so the first recompilation marks them dynamic (``torch.compile``'s default).
    """

    def __init__(self, student: nn.Module, mode: str) -> None:
        super().__init__()
        self.module = student
        self.mode = mode
        self.__dict__["_compiled"] = torch.compile(student, mode=None if mode == "default" else mode)

    def forward(self, *args: Any) -> Any:
        compiled = self.__dict__["_compiled"]
        if compiled is not None:
            try:
                return compiled(*args)
            except Exception as err:  # noqa: BLE001  (any compiler failure: the eager forward is the same maths)
                self.__dict__["_compiled"] = None
                warnings.warn(f"torch.compile(mode={self.mode!r}) of the student failed, running eagerly: "
                              f"{type(err).__name__}: {err}", RuntimeWarning, stacklevel=2)
        return self.module(*args)
