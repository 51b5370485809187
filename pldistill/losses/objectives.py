"""Training objectives as named, weighted sums of loss terms (paper eq. 8 and the table 1 baselines).

An objective is a list of terms, each weighted by one hyperparameter (torchdistill's
``WeightedSumLoss`` idea): an ablation sets a weight to 0, and every term is logged under its
own name whatever its weight. Terms are small functions of a :class:`DistillBatch` returning an
unweighted scalar; the heavy lifting is in :mod:`.cka`, :mod:`.kl` and :mod:`.relation`. This
module holds the registry and the weighted sum; the terms register next to their definitions: the
audio LLM's in :mod:`.distill_terms`, EmoDistill's in :mod:`.emodistill`.

Terms read the batch of one student family: :class:`DistillBatch` (the audio LLM: logits per token
position) or :class:`ClassifierBatch` (EmoDistill's classifier: one logit row per clip, head
embeddings, two teachers). The classifier's inputs have no sequence axis, no vocabulary and no
masks, so they get a batch type of their own rather than being squeezed into the LLM's; a term
and its objective name their family, and an objective's terms must all read the same one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from .cka import CKA_ESTIMATORS
from .contrastive import check_contrast
from .fused_objective import FUSABLE_TERMS, fused_logit_terms

__all__ = [
    "BATCH_TYPES",
    "DistillBatch",
    "ClassifierBatch",
    "ObjectiveOutput",
    "TermOptions",
    "Term",
    "Objective",
    "WeightedSumObjective",
    "TERMS",
    "OBJECTIVES",
    "register_term",
    "register_objective",
    "build_objective",
]


@dataclass
class DistillBatch:
    """Everything the terms read, for one micro-batch. Shapes: ``B`` batch, ``L`` sequence,
    ``V`` shared vocabulary, ``La`` audio tokens, ``Es``/``Et`` student/teacher embedding sizes."""

    #: (B, L, V), padding vocabulary rows already sliced away; None when student_hidden and
    #: student_lm_head stand for them (the fused path, :mod:`.fused_objective`)
    student_logits: Tensor | None
    labels: Tensor  #: (B, L) long: target token of the logit at each position (shifted), -100 elsewhere
    response_mask: Tensor  #: (B, L) bool: positions whose next token is a response token
    audio_mask: Tensor  #: (B, L) bool: positions of audio tokens
    #: (B, L) bool: the response positions the CE reads, when not all of them: an unlabelled clip's
    #: response is the teacher's answer (``data.labelled_fraction``), read by the teacher's terms only.
    #: None: ``response_mask``.
    ce_mask: Tensor | None = None
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
    #: CAAD's text-only teacher path (same prompt and response, no audio), put back at the response
    #: positions of *this* layout (other positions are never read): its logits (B, L, V), or its
    #: final hidden states (B, L, Ht) with teacher_lm_head (read when teacher_logits is None).
    teacher_text_logits: Tensor | None = None
    teacher_text_hidden: Tensor | None = None
    #: (B, L, Hs) student final hidden states and its (V, Hs) lm_head weight (no bias), given instead
    #: of student_logits: the logit terms then never materialise the student's logits whole.
    student_hidden: Tensor | None = None
    student_lm_head: Tensor | None = None


@dataclass
class ClassifierBatch:
    """What EmoDistill's terms read, for one micro-batch of the classifier student. Shapes: ``B``
    clips, ``C`` classes, ``Ep``/``El`` the prosodic/linguistic teacher's embedding widths."""

    student_logits: Tensor  #: (B, C) class logits
    labels: Tensor  #: (B,) long class indices
    #: (B,) bool: clips whose gold label the CE reads (``data.labelled_fraction``); None: all of them.
    #: An unlabelled clip's ``labels`` entry is a placeholder nothing reads.
    labelled: Tensor | None = None
    #: (B, Ep) / (B, El): the student's prosodic / linguistic head, mapped to its teacher's width
    student_pros: Tensor | None = None
    student_ling: Tensor | None = None
    teacher_p_logits: Tensor | None = None  #: (B, C) prosodic teacher
    teacher_l_logits: Tensor | None = None  #: (B, C) linguistic teacher
    teacher_p_emb: Tensor | None = None  #: (B, Ep)
    teacher_l_emb: Tensor | None = None  #: (B, El)


@dataclass
class ObjectiveOutput:
    """``total`` carries the graph; ``terms`` holds every term's unweighted value, detached."""

    total: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class TermOptions:
    """Settings the terms share (weights live in the objective, not here). Their values come from
    the hyperparameters of the same name (``pldistill.config.Hyperparameters`` holds the defaults)."""

    temperature: float  #: t of eq. 5 for every KL term
    cka_estimator: str  #: see pldistill.losses.awcka
    #: CE per sample: ``sum`` over its response tokens (eq. 7) or their ``mean``; then the mean over samples.
    ce_reduction: str
    #: ``rho``: the CE's per-sample mean is divided by it, so the CE sums a batch's labelled clips over
    #: ``B * rho``, their expected number (``ce_divisor: expected_labelled``); 1: over ``B``.
    ce_share: float = 1.0
    kl_chunk_size: int | None = None  #: see pldistill.losses.kl_divergence (a resource setting)
    #: ``a`` of CAAD's contrastive teacher (kl_response_cd); None when no term of the objective reads it.
    caad_contrast: float | None = None
    #: EmoDistill's prosodic / linguistic KL temperatures; None when no term of the objective reads them.
    tau_p: float | None = None
    tau_l: float | None = None


#: ``(batch, options) -> unweighted scalar``; the batch is a :class:`DistillBatch` or a
#: :class:`ClassifierBatch`, as the term's family says.
TermFn = Callable[[Any, TermOptions], Tensor]
#: Student family -> the batch its terms read.
BATCH_TYPES: Mapping[str, type] = MappingProxyType({"audiolm": DistillBatch, "classifier": ClassifierBatch})


@dataclass(frozen=True)
class Term:
    """A loss term as registered: its function, the optional batch fields it reads, its label in
    reports, whether ``kl_t2_scaling`` multiplies its weight by the square of its temperature (the
    hyperparameter ``temperature`` names), the hyperparameters it reads through :class:`TermOptions`
    (fields of the same name) beyond the shared ones, the student family whose batch it reads, and
    whether it reads the student's logits (an audio-LM term that does can take the fused path)."""

    name: str
    fn: TermFn
    inputs: tuple[str, ...]
    label: str
    kl: bool = False
    hparams: tuple[str, ...] = ()
    family: str = "audiolm"
    temperature: str = "temperature"
    logits: bool = True


@dataclass(frozen=True)
class Objective:
    """A registered objective: ``weights`` maps each term to the hyperparameter weighting it
    (None: weight 1); ``label`` is its row name in reports (the paper's Table 1). ``gates`` maps a
    term to a hyperparameter whose 0 switches the term off too (EmoDistill: a teacher's cosine term
    goes with its KL weight). ``ablations`` maps a weight hyperparameter to the words its 0 adds to
    the label (``EmoDistill w/o prosodic teacher``): variants that are rows of their own in Table 1.
    ``family``: the student whose batch the terms read. ``defaults``: hyperparameters whose default
    differs for this objective from :class:`pldistill.config.Hyperparameters`' (CAAD's ``beta`` is 0:
    its paper has no audio-logit term), applied where a config leaves them unset.
    ``pseudo_target``: whether the objective reads a pseudo target (``hparams.pseudo_target``; CAAD's
    Stage 1): the others' teacher terms read the gold answer, and a sweep may not set ``metadata``."""

    name: str
    label: str
    weights: Mapping[str, str | None]
    gates: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    ablations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    family: str = "audiolm"
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    pseudo_target: bool = False

    def reads(self) -> frozenset[str]:
        """The loss hyperparameters this objective reads: its weights and gates, its terms' own options
        and, for a KL term, its temperature (lr, LoRA and the rest are every objective's)."""
        terms = [_TERMS[t] for t in self.weights]
        return frozenset({w for w in (*self.weights.values(), *self.gates.values()) if w is not None}
                         | {h for t in terms for h in t.hparams}
                         | {t.temperature for t in terms if t.kl}
                         | ({"pseudo_target"} if self.pseudo_target else set()))

    def method_label(self, hparams: Mapping[str, Any]) -> str:
        """The Table 1 row of a trial with ``hparams``: the label, plus each ablation whose weight is 0."""
        off = [words for h, words in self.ablations.items() if h in hparams and _is_zero(hparams[h])]
        return " ".join([self.label, *off])


def _is_zero(value: Any) -> bool:
    try:
        return float(value) == 0.0
    except (TypeError, ValueError):
        return False


_TERMS: dict[str, Term] = {}
_OBJECTIVES: dict[str, Objective] = {}
#: Term name -> :class:`Term`, in registration order (the order of logs and loss columns).
TERMS: Mapping[str, Term] = MappingProxyType(_TERMS)
#: Objective name -> :class:`Objective`, in registration order (the order of reports).
OBJECTIVES: Mapping[str, Objective] = MappingProxyType(_OBJECTIVES)


def register_term(name: str, *, label: str, inputs: tuple[str, ...] = (), kl: bool = False,
                  hparams: tuple[str, ...] = (), family: str = "audiolm",
                  temperature: str = "temperature", logits: bool = True) -> Callable[[TermFn], TermFn]:
    """Decorator: register ``fn`` as the term ``name`` (torchdistill registers a loss next to its
    class the same way), so that adding a term touches the place that defines it."""

    def register(fn: TermFn) -> TermFn:
        if name in _TERMS or family not in BATCH_TYPES:
            raise ValueError(f"term {name!r}: registered twice or unknown family {family!r}")
        _TERMS[name] = Term(name, fn, tuple(inputs), label, kl, tuple(hparams), family, temperature, logits)
        return fn

    return register


def register_objective(name: str, *, label: str, gates: Mapping[str, str] | None = None,
                       ablations: Mapping[str, str] | None = None, defaults: Mapping[str, Any] | None = None,
                       pseudo_target: bool = False, **weights: str | None) -> Objective:
    """Register the objective ``name``: ``term=hyperparameter`` (or None for weight 1) per term;
    ``gates``, ``ablations``, ``defaults`` and ``pseudo_target`` as :class:`Objective` describes them."""
    unknown = sorted((set(weights) | set(gates or {})) - set(_TERMS))
    families = {_TERMS[t].family for t in weights if t in _TERMS}
    if name in _OBJECTIVES or unknown or len(families) != 1:
        raise ValueError(f"objective {name!r}: registered twice, unknown terms {unknown}, or terms of several "
                         f"student families {sorted(families)}")
    _OBJECTIVES[name] = Objective(name, label, MappingProxyType(dict(weights)), MappingProxyType(dict(gates or {})),
                                  MappingProxyType(dict(ablations or {})), families.pop(),
                                  MappingProxyType(dict(defaults or {})), pseudo_target)
    return _OBJECTIVES[name]


#: Eq. 5-6 average over a sample's positions; the batch then averages the samples, so that a batch of
#: B clips gives the loss and gradients of B accumulated batches of one (the paper's batch 1 x 16).
_KL_REDUCTION = "sample_mean"


_TEACHER_FIELDS = frozenset({"teacher_logits", "teacher_text_logits", "teacher_audio", "audio_weights"})
#: Logit fields a batch may give as final hidden states instead (with ``teacher_lm_head``).
_HIDDEN_FORMS = {"teacher_logits": "teacher_hidden", "teacher_text_logits": "teacher_text_hidden"}
_AUDIO_FIELDS = frozenset({"teacher_audio", "student_audio"})


class WeightedSumObjective:
    """``total = sum_i weight_i * term_i(batch)``.

    Every term is computed and logged. A term whose weight is 0 is computed under
    ``torch.no_grad()`` and left out of the total, so it costs no backward memory and a non-finite
    value in an ablated term cannot reach the total.

    A batch without ``student_logits`` (``student_hidden`` and ``student_lm_head`` instead) takes the
    fused path: the terms that read the logits come from :func:`.fused_logit_terms`, which needs
    every such term to be in :data:`.FUSABLE_TERMS` (``fusable``).
    """

    def __init__(self, name: str, weights: Mapping[str, float], options: TermOptions) -> None:
        self.name = name
        self.weights: dict[str, float] = dict(weights)
        self.options = options
        self.required_fields = frozenset(f for t in self.weights for f in TERMS[t].inputs)
        self.needs_teacher = bool(self.required_fields & _TEACHER_FIELDS)
        self.needs_audio = bool(self.required_fields & _AUDIO_FIELDS)
        self.needs_audio_weights = "audio_weights" in self.required_fields
        #: CAAD: the teacher's text-only path must run too (online) or be read (cached).
        self.needs_text_teacher = "teacher_text_logits" in self.required_fields
        #: Every term that reads the student's logits can read its hidden states instead.
        self.fusable = all(t in FUSABLE_TERMS or not TERMS[t].logits for t in self.weights)
        ce = "sample_sum" if options.ce_reduction == "sum" else "sample_mean"
        #: Fusable term -> the reduction it uses (pldistill/losses/reduction.py): per sample, so a batch
        #: of B clips equals B accumulated batches of one (tests/unit/train/test_microbatch.py).
        self.reductions = {t: ce if t == "ce" else _KL_REDUCTION for t in self.weights if t in FUSABLE_TERMS}

    def __repr__(self) -> str:
        return f"WeightedSumObjective({self.name!r}, weights={self.weights}, options={self.options})"

    def __call__(self, batch: DistillBatch) -> ObjectiveOutput:
        def given(f: str) -> bool:
            hidden = _HIDDEN_FORMS.get(f)
            return getattr(batch, f) is not None or (
                hidden is not None and getattr(batch, hidden) is not None and batch.teacher_lm_head is not None)

        missing = sorted(f for f in self.required_fields if not given(f))
        if missing:
            raise ValueError(
                f"objective {self.name!r} needs batch fields {missing} (terms {list(self.weights)})"
            )
        fused = self._fused_values(batch) if batch.student_logits is None else {}
        terms: dict[str, Tensor] = {}
        total: Tensor | None = None
        for term, weight in self.weights.items():
            fn = TERMS[term].fn
            if weight == 0.0:
                with torch.no_grad():
                    terms[term] = fused[term] if term in fused else fn(batch, self.options)
                continue
            value = fused[term] if term in fused else fn(batch, self.options)
            terms[term] = value.detach()
            total = weight * value if total is None else total + weight * value
        if total is None:  # every weight is 0: nothing to optimise
            student = batch.student_logits if batch.student_logits is not None else batch.student_hidden
            assert student is not None
            total = torch.zeros((), device=student.device)
        return ObjectiveOutput(total=total, terms=terms)

    def _fused_values(self, batch: DistillBatch) -> dict[str, Tensor]:
        """The logit terms from the student's hidden states; zero-weight ones without gradient."""
        if batch.student_hidden is None or batch.student_lm_head is None or not self.fusable:
            raise ValueError(f"objective {self.name!r}: a batch without student_logits needs student_hidden "
                             f"and student_lm_head, and terms in {sorted(FUSABLE_TERMS)} (terms {list(self.weights)})")
        out: dict[str, Tensor] = {}
        for grad in (True, False):
            names = [t for t, w in self.weights.items() if TERMS[t].logits and (w != 0.0) == grad]
            if names:
                with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
                    out.update(fused_logit_terms(batch, names, self.options, self.reductions))
        return out


def build_objective(
    name: str,
    hparams: Mapping[str, Any],
    *,
    kl_chunk_size: int | None = None,
    term_weights: Mapping[str, float] | None = None,
    labelled_share: float = 1.0,
) -> WeightedSumObjective:
    """The objective ``name`` of :data:`OBJECTIVES` with its weights and options read from ``hparams``.

    ``hparams`` maps hyperparameter names to values (``Hyperparameters.model_dump()``; the defaults
    are written there once, the paper's section 3.1): every weight the objective names (``alpha``,
    ``beta``, ``gamma``, ...), the term options ``temperature``, ``cka_estimator``, ``kl_t2_scaling``
    and ``ce_reduction``, and the options its terms read (``caad_contrast`` for ``kl_response_cd``)
    must be present. ``term_weights`` sets a term's weight directly, replacing its
    hyperparameter; naming a term that the objective lacks adds it. ``kl_t2_scaling`` multiplies the
    weight of every KL term by ``t**2`` (Hinton et al.; off in the paper); the logged term stays the
    unscaled KL, so ``total`` is still the weighted sum of ``terms`` with the weights in ``.weights``.
    ``labelled_share``: ``rho``, the share of labelled clips among those the batches draw from (the
    rest have no gold label, ``data.labelled_fraction``); below 1 the hyperparameter ``ce_divisor``
    says whether the CE is divided by ``B * rho`` (``TermOptions.ce_share``) or by ``B``.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; valid: {', '.join(OBJECTIVES)}")
    spec = OBJECTIVES[name]
    overrides = dict(term_weights or {})
    unknown = sorted(set(overrides) - set(TERMS))
    if unknown:
        raise ValueError(f"unknown term(s) {unknown} in term_weights; valid: {', '.join(TERMS)}")
    term_options = {h for t in (*spec.weights, *overrides) for h in TERMS[t].hparams}
    wanted = {h for h in (*spec.weights.values(), *spec.gates.values()) if h is not None} | {
        "temperature", "cka_estimator", "kl_t2_scaling", "ce_reduction"} | {
        TERMS[t].temperature for t in (*spec.weights, *overrides) if TERMS[t].kl} | (
        {"ce_divisor"} if labelled_share != 1.0 else set())
    absent = sorted((wanted | term_options) - set(hparams))
    if absent:
        raise ValueError(f"objective {name!r} needs hyperparameters {absent}")
    temperature, cka_estimator = hparams["temperature"], hparams["cka_estimator"]
    if cka_estimator not in CKA_ESTIMATORS:
        raise ValueError(f"unknown cka_estimator {cka_estimator!r}; valid: {', '.join(CKA_ESTIMATORS)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 < labelled_share <= 1.0:
        raise ValueError(f"labelled_share must be in (0, 1], got {labelled_share}")
    ce_share = labelled_share if labelled_share != 1.0 and hparams["ce_divisor"] == "expected_labelled" else 1.0
    extra = {h: hparams[h] for h in sorted(term_options)}
    if "caad_contrast" in extra:
        extra["caad_contrast"] = check_contrast(extra["caad_contrast"])
    weights = {term: 1.0 if h is None else float(hparams[h]) for term, h in spec.weights.items()}
    weights.update({term: 0.0 for term, gate in spec.gates.items() if float(hparams[gate]) == 0.0})
    weights.update({term: float(w) for term, w in overrides.items()})
    if hparams["kl_t2_scaling"]:  # each KL term by its own temperature (EmoDistill's tau_p, tau_l)
        weights = {t: w * float(hparams[TERMS[t].temperature])**2 if TERMS[t].kl else w for t, w in weights.items()}
    options = TermOptions(temperature=temperature, cka_estimator=cka_estimator, kl_chunk_size=kl_chunk_size,
                          ce_reduction=hparams["ce_reduction"], ce_share=ce_share, **extra)
    return WeightedSumObjective(name, weights, options)
