"""Training objectives as named, weighted sums of loss terms (paper eq. 8 and the table 1 baselines).

An objective is a list of terms, each weighted by one hyperparameter (torchdistill's
``WeightedSumLoss`` idea): an ablation sets a weight to 0, and every term is logged under its
own name whatever its weight. Terms are small functions of a :class:`DistillBatch` returning an
unweighted scalar; the heavy lifting is in :mod:`.cka`, :mod:`.kl` and :mod:`.relation`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor

from .cka import CKA_ESTIMATORS, awcka
from .kl import kl_divergence, kl_divergence_from_hidden
from .relation import relation_distance

__all__ = [
    "DistillBatch",
    "ObjectiveOutput",
    "TermOptions",
    "WeightedSumObjective",
    "TERMS",
    "TERM_INPUTS",
    "OBJECTIVES",
    "build_objective",
]


@dataclass
class DistillBatch:
    """Everything the terms read, for one micro-batch. Shapes: ``B`` batch, ``L`` sequence,
    ``V`` shared vocabulary, ``La`` audio tokens, ``Es``/``Et`` student/teacher embedding sizes."""

    student_logits: Tensor  #: (B, L, V), padding vocabulary rows already sliced away
    labels: Tensor  #: (B, L) long: target token of the logit at each position (shifted), -100 elsewhere
    response_mask: Tensor  #: (B, L) bool: positions whose next token is a response token
    audio_mask: Tensor  #: (B, L) bool: positions of audio tokens
    teacher_logits: Tensor | None = None  #: (B, L, V); None for sft
    student_audio: Tensor | None = None  #: (B, La, Es) student projector outputs
    teacher_audio: Tensor | None = None  #: (B, La, Et) teacher projector outputs
    audio_token_mask: Tensor | None = None  #: (B, La) bool valid audio tokens; None = all valid
    audio_weights: Tensor | None = None  #: (B, La) from audio_token_weights
    #: (B, L, Ht) teacher final hidden states and its (V, Ht) lm_head weight: with both set, the KL
    #: terms recompute the teacher logits chunk by chunk (kl_divergence_from_hidden) instead of
    #: reading teacher_logits, which may then be None.
    teacher_hidden: Tensor | None = None
    teacher_lm_head: Tensor | None = None


@dataclass
class ObjectiveOutput:
    """``total`` carries the graph; ``terms`` holds every term's unweighted value, detached."""

    total: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class TermOptions:
    """Settings the terms share (weights live in the objective, not here)."""

    temperature: float = 2.0  #: t of eq. 5 for every KL term
    cka_estimator: str = "biased"  #: see pldistill.losses.awcka
    kl_chunk_size: int | None = None  #: see pldistill.losses.kl_divergence


def _ce(batch: DistillBatch, opts: TermOptions) -> Tensor:
    """Eq. 7: cross-entropy of the student's response logits against the labels.

    Averaged over all response tokens of the batch, whereas eq. 7 sums over one sample's response
    tokens: the mean keeps the scale independent of label length (and equals eq. 7 for the
    paper's one-token labels at batch size 1). Computed in fp32 on the response rows only.
    """
    logits = batch.student_logits[batch.response_mask]
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    if logits.shape[0] == 0:
        return logits.to(dtype).sum()
    return F.cross_entropy(logits.to(dtype), batch.labels[batch.response_mask])


def _cka(batch: DistillBatch, opts: TermOptions) -> Tensor:
    """Eq. 4: ``1 - AwCKA(teacher_audio, student_audio, audio_weights)``, mean over the batch."""
    assert batch.teacher_audio is not None and batch.student_audio is not None
    assert batch.audio_weights is not None
    sim = awcka(
        batch.teacher_audio.detach(),
        batch.student_audio,
        batch.audio_weights.detach(),
        batch.audio_token_mask,
        estimator=opts.cka_estimator,
    )
    return 1.0 - sim.mean()


def _kl(mask_field: str, direction: str) -> Callable[[DistillBatch, TermOptions], Tensor]:
    def term(batch: DistillBatch, opts: TermOptions) -> Tensor:
        if batch.teacher_logits is None and batch.teacher_hidden is not None:
            assert batch.teacher_lm_head is not None
            return kl_divergence_from_hidden(batch.teacher_hidden, batch.teacher_lm_head, batch.student_logits,
                                             getattr(batch, mask_field), temperature=opts.temperature,
                                             direction=direction, chunk_size=opts.kl_chunk_size)
        assert batch.teacher_logits is not None
        return kl_divergence(
            batch.teacher_logits,
            batch.student_logits,
            getattr(batch, mask_field),
            temperature=opts.temperature,
            direction=direction,
            chunk_size=opts.kl_chunk_size,
        )

    return term


_kl_audio = _kl("audio_mask", "forward")
_kl_audio.__doc__ = "Eq. 5: KL(P_T || P_S) at temperature t over the audio positions."
_kl_response = _kl("response_mask", "forward")
_kl_response.__doc__ = "Eq. 6: KL(P_T || P_S) at temperature t over the response positions."
_rkl_response = _kl("response_mask", "reverse")
_rkl_response.__doc__ = "Reverse KL(P_S || P_T) over the response positions (the 'Reverse KL' baseline)."


def _relation(batch: DistillBatch, opts: TermOptions) -> Tensor:
    """LLaVA-KD's relation distillation on the projector outputs; see :func:`.relation_distance`."""
    assert batch.teacher_audio is not None and batch.student_audio is not None
    return relation_distance(batch.teacher_audio.detach(), batch.student_audio, batch.audio_token_mask).mean()


#: Term name -> function ``(batch, options) -> unweighted scalar``.
TERMS: Mapping[str, Callable[[DistillBatch, TermOptions], Tensor]] = MappingProxyType(
    {
        "ce": _ce,
        "cka": _cka,
        "kl_audio": _kl_audio,
        "kl_response": _kl_response,
        "rkl_response": _rkl_response,
        "relation": _relation,
    }
)

#: Term name -> the optional :class:`DistillBatch` fields it reads.
TERM_INPUTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "ce": (),
        "cka": ("teacher_audio", "student_audio", "audio_weights"),
        "kl_audio": ("teacher_logits",),
        "kl_response": ("teacher_logits",),
        "rkl_response": ("teacher_logits",),
        "relation": ("teacher_audio", "student_audio"),
    }
)

_KL_TERMS = frozenset({"kl_audio", "kl_response", "rkl_response"})
_TEACHER_FIELDS = frozenset({"teacher_logits", "teacher_audio", "audio_weights"})
_AUDIO_FIELDS = frozenset({"teacher_audio", "student_audio"})

#: Objective name -> {term name: the build_objective hyperparameter weighting it (None = 1)}.
OBJECTIVES: Mapping[str, Mapping[str, str | None]] = MappingProxyType(
    {
        "sft": {"ce": None},
        "forward_kl": {"ce": None, "kl_response": "gamma"},
        "reverse_kl": {"ce": None, "rkl_response": "gamma"},
        "llava_kd": {"ce": None, "kl_response": "gamma", "kl_audio": "beta", "relation": "relation_weight"},
        "ldist": {"ce": None, "kl_audio": "beta", "kl_response": "gamma"},
        "pl_distill": {"ce": None, "cka": "alpha", "kl_audio": "beta", "kl_response": "gamma"},  # eq. 8
    }
)


class WeightedSumObjective:
    """``total = sum_i weight_i * term_i(batch)``.

    Every term is computed and logged. A term whose weight is 0 is computed under
    ``torch.no_grad()`` and left out of the total, so it costs no backward memory and a non-finite
    value in an ablated term cannot reach the total.
    """

    def __init__(self, name: str, weights: Mapping[str, float], options: TermOptions) -> None:
        self.name = name
        self.weights: dict[str, float] = dict(weights)
        self.options = options
        self.required_fields = frozenset(f for t in self.weights for f in TERM_INPUTS[t])
        self.needs_teacher = bool(self.required_fields & _TEACHER_FIELDS)
        self.needs_audio = bool(self.required_fields & _AUDIO_FIELDS)

    def __repr__(self) -> str:
        return f"WeightedSumObjective({self.name!r}, weights={self.weights}, options={self.options})"

    def __call__(self, batch: DistillBatch) -> ObjectiveOutput:
        has_hidden = batch.teacher_hidden is not None and batch.teacher_lm_head is not None
        missing = sorted(f for f in self.required_fields
                         if getattr(batch, f) is None and not (f == "teacher_logits" and has_hidden))
        if missing:
            raise ValueError(
                f"objective {self.name!r} needs batch fields {missing} (terms {list(self.weights)})"
            )
        terms: dict[str, Tensor] = {}
        total: Tensor | None = None
        for term, weight in self.weights.items():
            if weight == 0.0:
                with torch.no_grad():
                    terms[term] = TERMS[term](batch, self.options)
                continue
            value = TERMS[term](batch, self.options)
            terms[term] = value.detach()
            total = weight * value if total is None else total + weight * value
        if total is None:  # every weight is 0: nothing to optimise
            total = torch.zeros((), device=batch.student_logits.device)
        return ObjectiveOutput(total=total, terms=terms)


def build_objective(
    name: str,
    *,
    alpha: float = 1.0,
    beta: float = 0.8,
    gamma: float = 1.0,
    temperature: float = 2.0,
    kl_t2_scaling: bool = False,
    cka_estimator: str = "biased",
    relation_weight: float = 1.0,
    kl_chunk_size: int | None = None,
    term_weights: Mapping[str, float] | None = None,
) -> WeightedSumObjective:
    """The objective ``name`` of :data:`OBJECTIVES` with its weights resolved.

    Defaults are the paper's (section 3.1): ``alpha=1.0`` (cka), ``beta=0.8`` (kl_audio),
    ``gamma=1.0`` (kl_response / rkl_response), ``t=2``. ``term_weights`` sets a term's weight
    directly, replacing its hyperparameter; naming a term that the objective lacks adds it.
    ``kl_t2_scaling`` multiplies the weight of every KL term by ``t**2`` (Hinton et al.; off in the
    paper); the logged term stays the unscaled KL, so ``total`` is still the weighted sum of
    ``terms`` with the weights in ``.weights``.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; valid: {', '.join(OBJECTIVES)}")
    if cka_estimator not in CKA_ESTIMATORS:
        raise ValueError(f"unknown cka_estimator {cka_estimator!r}; valid: {', '.join(CKA_ESTIMATORS)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    overrides = dict(term_weights or {})
    unknown = sorted(set(overrides) - set(TERMS))
    if unknown:
        raise ValueError(f"unknown term(s) {unknown} in term_weights; valid: {', '.join(TERMS)}")
    hyper = {"alpha": alpha, "beta": beta, "gamma": gamma, "relation_weight": relation_weight}
    weights = {term: 1.0 if h is None else float(hyper[h]) for term, h in OBJECTIVES[name].items()}
    weights.update({term: float(w) for term, w in overrides.items()})
    if kl_t2_scaling:
        weights = {t: w * temperature**2 if t in _KL_TERMS else w for t, w in weights.items()}
    options = TermOptions(temperature=temperature, cka_estimator=cka_estimator, kl_chunk_size=kl_chunk_size)
    return WeightedSumObjective(name, weights, options)
