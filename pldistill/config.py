"""Typed configuration of one trial: data, models, objective hyperparameters, training.

A sweep file (``pldistill.sweep.config``) holds one of these as its base, overrides fields
of :class:`Hyperparameters` with fixed values and sampled ones, and hands every Tune trial a
fully resolved :class:`TrialConfig`. Everything below the sweep layer (trial loop, models,
data) reads only this module, never the sweep file.

Ranges are checked here so that a bad value fails before any work starts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DataConfig",
    "SynthConfig",
    "ModelConfig",
    "ClassifierConfig",
    "EmoDistillTeachersConfig",
    "StudentFamily",
    "STUDENT_FAMILIES",
    "FAMILY_HPARAMS",
    "objective_family",
    "TeacherFinetuneConfig",
    "Hyperparameters",
    "ReplicatesConfig",
    "TrainConfig",
    "TrialConfig",
    "EvalSplit",
    "EvalMetric",
    "ValMetricName",
    "TestMetricName",
    "MetricName",
    "METRIC_NAMES",
    "SCORE_NAMES",
    "metric_mode",
    "config_hash",
]

#: The splits a trial evaluates on, and what it measures on each: unweighted and weighted accuracy,
#: macro-F1, the student's cross-entropy on the gold answer (eq. 7: summed over the answer's tokens,
#: mean over clips), and the UA of the *conflict* clips alone (words of another emotion than the
#: voice: how much a model follows the voice rather than the words; absent where a corpus marks none).
EvalSplit = Literal["val", "test"]
EvalScore = Literal["ua", "wa", "f1"]  # the classification scores (a model card reports these)
EvalMetric = Literal[EvalScore, Literal["loss", "conflict_ua"]]
#: The validation metrics, which alone may pick a trial's best epoch (test never selects).
ValMetricName = Literal["val_ua", "val_wa", "val_f1", "val_loss", "val_conflict_ua"]
TestMetricName = Literal["test_ua", "test_wa", "test_f1", "test_loss", "test_conflict_ua"]
#: ``<split>_<metric>``: what a trial reports per epoch, records, and a sweep may optimise; the
#: sweep file, Tune, the trial loop, the recorder and the results schema all use these names.
MetricName = Literal[ValMetricName, TestMetricName]
METRIC_NAMES: tuple[str, ...] = get_args(MetricName)
#: Each split's classification scores (``val_ua`` ... ``test_f1``), in that order.
SCORE_NAMES: tuple[str, ...] = tuple(f"{s}_{m}" for s in get_args(EvalSplit) for m in get_args(EvalScore))


def metric_mode(name: str) -> Literal["max", "min"]:
    """``min`` for a loss, ``max`` for a score; ``name`` is one of :data:`METRIC_NAMES`."""
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}; valid: {', '.join(METRIC_NAMES)}")
    return "min" if name.endswith("_loss") else "max"


def _registered(kind: str, value: str) -> str:
    """``value`` if the loss library registers it as an objective / weighting, else a ValueError
    listing the valid ones. Imported here, not at the top: the names live where the losses are
    defined (``pldistill.losses``), and torch should not load for ``--help``."""
    from pldistill.losses import OBJECTIVES, WEIGHTINGS

    valid = OBJECTIVES if kind == "objective" else WEIGHTINGS
    if value not in valid:
        raise ValueError(f"unknown {kind} {value!r}; valid: {', '.join(valid)}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


class SynthConfig(_Strict):
    """The embedded synthetic emotional-speech corpus (EmoBox format); the one place its defaults live.

    The default, 12 speakers x 4 emotions x 16 clips in 3 folds, has 768 clips of 1.5-4 s and tests
    each fold on 256 clips of 4 speakers (the old tone corpus: 192 clips, 48 per test fold), plus
    the teacher pool's 24 speakers (1,536 clips). Writing it costs about 72 CPU-seconds (45 s on 2 cores). Sizing
    (issue "The embedded corpus speaks"): with no pool the fine-tuned tiny teacher scored 72.5 test
    UA against SFT's 67.0, too little to distil; with the pool it scores 88.7 on the hardest fold
    (69.5 without). Measurements in bench/RESULTS.md.
    """

    speakers: int = Field(12, ge=2, description="number of synthetic speakers (alternating F/M)")
    per_class: int = Field(16, ge=1, description="clips per speaker and emotion")
    folds: int = Field(3, ge=2, description="speaker-independent folds (<= speakers)")
    seed: int = 0
    labels: tuple[str, ...] = Field(("Neutral", "Happy", "Angry", "Sad"), min_length=2,
                                    description="emotions, in class-index order")
    clip_seconds: tuple[float, float] = Field((1.5, 4.0), description="shortest and longest clip, seconds")
    #: Fractions of each speaker's clips of an emotion whose words match the emotion, are
    #: lexically neutral, or express another emotion (``pldistill.data.sentences``).
    congruent: float = Field(0.5, ge=0.0, le=1.0, description="fraction of clips with words of their emotion")
    neutral: float = Field(0.25, ge=0.0, le=1.0, description="fraction of clips with lexically neutral words")
    conflict: float = Field(0.25, ge=0.0, le=1.0, description="fraction of clips with words of another emotion")
    #: Speakers beyond the folds' whose clips only a teacher that is fine-tuned here trains on
    #: (``synthetic/teacher_pool.jsonl``). A real teacher (Qwen2-Audio) has heard far more speech than
    #: the fold it is distilled on; the tiny teacher, trained on the fold alone, would know no more than
    #: its student. No fold's train, validation or test split holds these speakers, so no method sees
    #: them except through the teacher's outputs, and the comparison between students stays fair.
    teacher_speakers: int = Field(24, ge=0, description="extra speakers heard only by the fine-tuned teacher")

    @model_validator(mode="after")
    def _consistent(self) -> SynthConfig:
        if self.folds > self.speakers:
            raise ValueError(f"folds ({self.folds}) must be <= speakers ({self.speakers})")
        if abs(self.congruent + self.neutral + self.conflict - 1.0) > 1e-6:
            raise ValueError("congruent + neutral + conflict must be 1, got "
                             f"{self.congruent + self.neutral + self.conflict:g}")
        lo, hi = self.clip_seconds
        if not 0.5 <= lo <= hi <= 30.0:
            raise ValueError(f"clip_seconds must satisfy 0.5 <= min <= max <= 30, got {self.clip_seconds}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must not repeat, got {list(self.labels)}")
        return self


class DataConfig(_Strict):
    """Which corpus, which folds and how clips become features."""

    source: Literal["synthetic", "emobox"] = "synthetic"
    #: EmoBox: folder holding ``<dataset>/label_map.json`` and ``<dataset>/fold_<k>/...jsonl``.
    #: Synthetic: where the generated corpus lives (created when missing).
    manifests: Path | None = None
    #: Folder that the manifests' relative ``wav`` paths resolve against (default: ``manifests``).
    audio_root: Path | None = None
    dataset: str = "synthetic"
    folds: list[int] = Field(default_factory=lambda: [1], min_length=1)
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    val_seed: int = 0
    #: Semi-supervised distillation: the fraction of each fold's training clips (after validation is
    #: carved) whose gold labels the student reads, drawn per emotion with ``labelled_seed``
    #: (``pldistill.data.split_labelled``). The rest are *unlabelled*: a teacher fine-tuned here trains
    #: on the labelled clips (and its pool) only; distillation objectives train on every clip, with
    #: the CE on labelled clips only and the teacher's terms on all, forced on the teacher's own
    #: answer where there is no label; ``sft`` trains on the labelled clips alone, for as many
    #: optimizer steps as the others. 1: every clip is labelled (the paper's setting).
    labelled_fraction: float = Field(1.0, gt=0.0, le=1.0)
    labelled_seed: int = 0
    #: Clip window in seconds for the encoder; None picks the smallest window that fits the data
    #: (capped at 30 s, the real encoder's window).
    window_s: float | None = Field(None, gt=0.0, le=30.0)
    #: What to do with a clip whose audio cannot be read: fail the run, or skip it with a warning.
    on_bad_audio: Literal["fail", "skip"] = "fail"
    #: Transcripts for manifests that carry none (real EmoBox): a JSONL file, one
    #: ``{"key": ..., "transcript": ...}`` per line (``pldistill.data.emobox.load_transcripts``). A
    #: manifest line's own ``transcript`` field wins.
    transcripts: Path | None = None
    synth: SynthConfig = Field(default_factory=SynthConfig)

    @field_validator("folds")
    @classmethod
    def _folds_positive(cls, v: list[int]) -> list[int]:
        if any(f < 1 for f in v):
            raise ValueError("folds are numbered from 1")
        if len(set(v)) != len(v):
            raise ValueError("folds must not repeat")
        return v


class TeacherFinetuneConfig(_Strict):
    """Fine-tuning of the teacher before distillation (the tiny default needs it to know anything)."""

    #: None: on for the ``tiny`` teacher (random until trained), off for a checkpoint, which is used
    #: as is, as the paper uses Qwen2-Audio (it does not fine-tune the teacher).
    enabled: bool | None = None
    # 20 epochs at 1e-3 gave the tiny teacher test UA 0.81-0.88 on the synthetic folds; 6 epochs
    # at 3e-3 left it at chance (bench notes in bench/RESULTS.md).
    epochs: int = Field(20, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    batch_size: int = Field(8, ge=1)
    #: Whether the fine-tune trains the teacher's audio encoder too. None: the ``tiny`` teacher's
    #: (random until trained) is trained, a real one stays frozen. The student shares the teacher's
    #: encoder, frozen, so what the fine-tune puts in the encoder every student, SFT included, gets
    #: for free; ``false`` keeps the tiny encoder at its random initialisation (a fixed, generic
    #: feature extractor, as a pretrained encoder is to the paper's teacher and student) and puts the
    #: teacher's task knowledge in its projector and language model, which is what distillation transfers.
    train_encoder: bool | None = None


#: The student families: the audio-LLM student of PL-Distill (shared encoder, projector, LLM with LoRA)
#: and EmoDistill's speech classifier (encoder, two GELU heads, linear classifier).
StudentFamily = Literal["audiolm", "classifier"]
STUDENT_FAMILIES: tuple[str, ...] = get_args(StudentFamily)
#: Hyperparameters only one family reads (the others, e.g. ``objective``, ``lr``, ``kl_t2_scaling``, are
#: read by both). Sweep validation refuses a value set for trials that would ignore it.
FAMILY_HPARAMS: dict[str, tuple[str, ...]] = {
    "audiolm": ("alpha", "beta", "gamma", "temperature", "weighting", "sharpen_p", "cka_estimator", "awcka_end_row",
                "ce_reduction", "llava_kd_relation", "caad_contrast", "pseudo_target", "lora_rank", "lora_alpha",
                "lora_dropout", "projector_lr"),
    "classifier": ("w_p", "w_l", "w_cos", "tau_p", "tau_l"),
}


def objective_family(objective: str) -> str:
    """The student family whose batches ``objective``'s terms read (registered with the losses)."""
    from pldistill.losses import OBJECTIVES

    return OBJECTIVES[objective].family


class ClassifierConfig(_Strict):
    """EmoDistill's student (``pldistill.models.classifier``): encoder, pooled, two GELU heads, classifier."""

    #: ``whisper``: the teacher's (shared, frozen) audio encoder on log-mels; ``hubert``: HuBERT on the
    #: 16 kHz waveform (the paper's), ``tiny`` from a config or a local checkpoint folder (``hubert``).
    encoder: Literal["whisper", "hubert"] = "whisper"
    hubert: str = "tiny"
    #: Fine-tune the encoder with the heads (a whisper encoder is copied first, so the shared one stays).
    finetune_encoder: bool = False
    ling_dim: int = Field(256, ge=1, description="width of the linguistic head")
    pros_dim: int = Field(256, ge=1, description="width of the prosodic head")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="on the pooled vector, before the heads")


class EmoDistillTeachersConfig(_Strict):
    """EmoDistill's two teachers, trained once per fold and cached; the rest of their settings are the
    defaults of ``ProsodicSettings`` / ``LinguisticSettings`` (pldistill.train.emodistill_teachers)."""

    #: ``tiny``: a small BERT built from a config with a word vocabulary of the fold's training
    #: transcripts; else a local BERT checkpoint folder, fine-tuned on them.
    linguistic: str = "tiny"
    #: The prosodic network on eGeMAPSv02 functionals: a plain or a residual MLP (the paper: a ResNet).
    prosodic_arch: Literal["mlp", "resnet"] = "mlp"
    epochs: int | None = Field(None, ge=1, description="both teachers' epochs (None: their own defaults)")
    #: Whether both teachers also train on the corpus's teacher pool (``teacher_pool.jsonl``: clips in no
    #: fold), as the audio-LM teacher's fine-tune does. None: when that teacher is fine-tuned here
    #: (``ModelConfig.finetunes_teacher``), so every teacher of a comparison trains on the same clips;
    #: false: the fold's labelled training clips alone.
    pool: bool | None = None


class ModelConfig(_Strict):
    """Teacher and student: ``tiny`` builds them from in-process configs; otherwise local paths."""

    #: Which student a trial trains: ``audiolm`` (PL-Distill and its baselines) or ``classifier``
    #: (EmoDistill). None: the objective's family (``emodistill`` -> classifier, every other -> audiolm),
    #: so one sweep can compare both; a value that contradicts the objective is refused.
    student: StudentFamily | None = None
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    emodistill_teachers: EmoDistillTeachersConfig = Field(default_factory=EmoDistillTeachersConfig)
    teacher: str = "tiny"
    student_llm: str = "tiny"
    #: Seed of the tiny models' random initialisation.
    init_seed: int = 0
    teacher_finetune: TeacherFinetuneConfig = Field(default_factory=TeacherFinetuneConfig)
    #: ``online``: encoder and teacher run in every step. ``cached``: they run once per fold into
    #: the teacher cache (``pldistill.train.teacher_cache``); steps read it and run only the
    #: student's projector and LLM. Same losses and gradients (fp32 storage). Sweeps default to
    #: ``cached`` (``pldistill.sweep.config.SweepModelConfig``).
    teacher_mode: Literal["online", "cached"] = "online"
    #: Storage of the cached arrays: ``float32`` is exact; ``bfloat16`` halves disk and memory
    #: (real runs) at the cost of rounding the teacher's outputs.
    teacher_cache_dtype: Literal["float32", "bfloat16"] = "float32"
    dtype: Literal["float32", "bfloat16"] = "float32"
    #: How the teacher's own figures are obtained: ``closed_set`` scores every label's answer, as the
    #: students are scored; ``generate`` lets it answer freely (greedy) and matches the answer to a
    #: label, as a zero-shot model is evaluated (an answer naming no label counts as wrong).
    teacher_eval: Literal["closed_set", "generate"] = "closed_set"

    @property
    def finetunes_teacher(self) -> bool:
        """Whether the teacher is fine-tuned on each fold's training clips before distillation."""
        enabled = self.teacher_finetune.enabled
        return self.teacher == "tiny" if enabled is None else enabled

    @property
    def emodistill_pool(self) -> bool:
        """Whether EmoDistill's teachers train on the teacher pool too (``emodistill_teachers.pool``)."""
        pool = self.emodistill_teachers.pool
        return self.finetunes_teacher if pool is None else pool


class Hyperparameters(_Strict):
    """Everything a sweep may fix or search, by flat name (these names appear in sweep files
    and as Parquet columns ``hp_<name>``)."""

    objective: str = "pl_distill"
    alpha: float = Field(1.0, ge=0.0, description="weight of 1 - AwCKA (eq. 8)")
    #: An objective may register another default (``caad``: 0), applied when beta is left unset.
    beta: float = Field(0.8, ge=0.0, description="weight of KL on audio positions (eq. 8)")
    gamma: float = Field(1.0, ge=0.0, description="weight of KL on response positions (eq. 8)")
    temperature: float = Field(2.0, gt=0.0, description="distillation temperature t (eq. 5)")
    kl_t2_scaling: bool = Field(False, description="multiply KL terms by t^2 (Hinton); paper: no")
    weighting: str = "attention_last"
    sharpen_p: float = Field(2.0, gt=0.0, description="exponent of attention_sharpened")
    cka_estimator: Literal["biased", "debiased"] = "biased"
    #: AwCKA's weights read the attention of the response's label token(s) ("the response token, e.g.
    #: Happy", section 2.2); true adds the closing <|im_end|> row.
    awcka_end_row: bool = Field(False, description="AwCKA weights also from the closing <|im_end|> row")
    #: Eq. 7 sums the CE over a sample's response tokens, then averages over samples (``sum``);
    #: ``mean`` averages within each sample instead (a scale independent of the answer's length).
    ce_reduction: Literal["sum", "mean"] = "sum"
    #: Under a labelled fraction (``data.labelled_fraction``), what the CE's sum over a batch's labelled
    #: clips is divided by. ``expected_labelled``: the expected number of labelled clips in the batch,
    #: ``B * rho`` (rho: the labelled share of the clips the batches draw from), so CE keeps its weight
    #: against the other terms of eq. 8; ``batch``: all ``B`` clips, so CE weighs about rho (what runs
    #: before issue 25 did). Either way a batch of B clips equals B accumulated clips; rho = 1: the same.
    ce_divisor: Literal["expected_labelled", "batch"] = "expected_labelled"
    llava_kd_relation: float = Field(1.0, ge=0.0, description="weight of LLaVA-KD's relation term")
    #: No default in the CAAD summary; 1.0 is contrastive decoding's usual strength (VCD's alpha = 1).
    #: ``allow_inf_nan=False``: ``ge`` alone refuses NaN but lets inf through.
    caad_contrast: float = Field(1.0, ge=0.0, allow_inf_nan=False,
                                 description="a of CAAD's teacher (1 + a) z_audio - a z_text; 0: forward KL")
    #: What the teacher (CAAD's two paths) is forced on. ``label``: the gold answer, the student's own
    #: CE target, so one student forward serves CE and KL. ``metadata``: the gold word followed by the
    #: clip's pitch, loudness and rate (low/medium/high by the training clips' eGeMAPS terciles,
    #: pldistill/data/pseudo_target.py); the student is forced on it too for every term but CE, which
    #: stays on the gold answer (a second sequence in the student's forward). Read only by the objectives
    #: registered with ``pseudo_target=True`` (``caad``; sweep validation refuses ``metadata`` for others).
    #: ``label`` is the default: CAAD then differs from forward KL by its contrast alone (README, CAAD).
    pseudo_target: Literal["label", "metadata"] = "label"
    #: EmoDistill (classifier student): CE + w_p KL_P + w_l KL_L + w_cos (cos_P + cos_L); w_p = 0 or
    #: w_l = 0 drops that teacher whole (its cosine term too). The paper gives no weights: 1 each.
    w_p: float = Field(1.0, ge=0.0, allow_inf_nan=False, description="EmoDistill: weight of KL to the prosodic teacher")
    w_l: float = Field(1.0, ge=0.0, allow_inf_nan=False,
                       description="EmoDistill: weight of KL to the linguistic teacher")
    w_cos: float = Field(1.0, ge=0.0, allow_inf_nan=False, description="EmoDistill: weight of the cosine embedding terms")
    tau_p: float = Field(0.5, gt=0.0, allow_inf_nan=False, description="EmoDistill: prosodic KL temperature (paper)")
    tau_l: float = Field(4.0, gt=0.0, allow_inf_nan=False, description="EmoDistill: linguistic KL temperature (paper)")
    lora_rank: int = Field(8, ge=1)
    lora_alpha: float = Field(256.0, gt=0.0)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lr: float = Field(1e-3, gt=0.0)
    projector_lr: float | None = Field(None, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, v: str) -> str:
        return _registered("objective", v)

    @field_validator("weighting")
    @classmethod
    def _known_weighting(cls, v: str) -> str:
        return _registered("weighting", v)

    @model_validator(mode="after")
    def _objective_defaults(self) -> Hyperparameters:
        """The objective's own defaults (``register_objective(defaults=...)``) for the names left unset.
        Written past ``validate_assignment``, so they stay out of ``model_fields_set``: a sweep's
        ``fixed`` section still tells what it set from what it left to the objective."""
        from pldistill.losses import OBJECTIVES

        own = OBJECTIVES[self.objective].defaults
        for name in {n for o in OBJECTIVES.values() for n in o.defaults} - self.model_fields_set:
            self.__dict__[name] = own.get(name, type(self).model_fields[name].default)
        return self


class ReplicatesConfig(_Strict):
    """Replicate until decided (``pldistill.train.replicates``): a trial runs ``min_seeds`` seeds over all
    its folds, then one more seed at a time (over all folds) until the stratified 95% interval of its
    validation selection metric (each run's best epoch by ``train.select_metric``) is at most
    ``half_width`` either side of the mean, or ``max_seeds`` seeds have run. Precision only: the rule
    never reads a test figure, nor how the trial compares with any other.

    Defaults: ±3 points of UA is the width at which the shipped grids' methods can be told apart
    (issue 24); 10 seeds bounds a trial's cost at a bit over three times a fixed three-seed trial.
    """

    #: At least 2: a fold needs two runs before the spread within it (the interval) can be estimated.
    min_seeds: int = Field(3, ge=2)
    max_seeds: int = Field(10, ge=2)
    #: In the selection metric's own units (UA, WA, F1: fractions, so 0.03 is 3 points; loss: nats).
    half_width: float = Field(0.03, gt=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> ReplicatesConfig:
        if self.max_seeds < self.min_seeds:
            raise ValueError(f"max_seeds ({self.max_seeds}) must be >= min_seeds ({self.min_seeds})")
        return self

    def seeds_problem(self, seeds: list[int]) -> str | None:
        """Why ``seeds`` (the listed replicate seeds) do not fit this rule, or None: they are the first
        ``min_seeds`` seeds; the ones added after them are the next integers."""
        if len(seeds) != self.min_seeds:
            return (f"with replicates, seeds lists the first min_seeds ({self.min_seeds}) seeds (the ones added "
                    f"after them are the next integers), got {len(seeds)}")
        return None

    def seed_sequence(self, seeds: list[int]) -> list[int]:
        """Every seed a trial may run, in order: ``seeds``, then ``max(seeds) + 1, + 2, ...`` up to ``max_seeds``."""
        return [*seeds, *range(max(seeds) + 1, max(seeds) + 1 + self.max_seeds - len(seeds))]


class TrainConfig(_Strict):
    """The loop: paper uses batch 1 x 16 accumulation, 5 epochs, best epoch kept."""

    epochs: int = Field(5, ge=1)
    batch_size: int = Field(1, ge=1)
    grad_accum: int = Field(16, ge=1)
    eval_batch_size: int = Field(16, ge=1)
    max_grad_norm: float | None = Field(1.0, gt=0.0)
    #: The epoch kept per fold is the best by this metric (a test metric here would select on test).
    select_metric: ValMetricName = "val_ua"
    #: Replicates: every fold trains once per seed (student projector and LoRA initialisation, dropout,
    #: data order); a trial's figures are the means over its (seed, fold) runs, each run kept too.
    #: Teacher and features are the fold's own and shared by the seeds.
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    #: Adaptive replication (None: exactly ``seeds``): ``seeds`` are the first ``min_seeds`` seeds, and
    #: more are added until the validation metric's interval is narrow enough (:class:`ReplicatesConfig`).
    replicates: ReplicatesConfig | None = None
    #: Evaluate on test each epoch (the paper reports the test score of the best validation epoch).
    eval_test_each_epoch: bool = True
    #: Limit training steps per epoch (None: all); for smoke runs and benchmarks.
    max_steps_per_epoch: int | None = Field(None, ge=1)
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads in a worker")
    #: Positions per chunk in the KL terms (None: all at once). At the real vocabulary (152k) a
    #: chunk of 128 cuts the KL's peak memory to about a quarter (bench/kl_memory.py).
    kl_chunk_size: int | None = Field(None, ge=1)
    #: Length bucketing (pldistill/train/batching.py): an epoch's clips, sorted by audio length, are
    #: cut into buckets of this many micro-batches (per rank) and shuffled within each bucket before
    #: the batches are cut: 1 pads least, larger varies the batches more from epoch to epoch.
    batches_per_bucket: int = Field(4, ge=1)
    #: Fuse the student's lm_head with the CE and KL terms, chunk by chunk (kl_chunk_size positions,
    #: 128 when unset), so its logits never exist whole: same values and gradients, a fraction of the
    #: memory (bench/kl_memory.py). Used when every logit term allows it (all objectives but llava_kd)
    #: and not under FSDP; false always materialises the logits.
    fused_logits: bool = True
    #: ``torch.compile`` the student's forward (and backward) in this mode; ``off``: eager. A failure
    #: to compile falls back to eager with a warning (pldistill/train/step.py:compile_student).
    #: ``reduce-overhead`` records CUDA graphs, one per batch shape (bucketing keeps them few).
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = "off"
    #: How a trial's workers share the work: ``ddp`` replicates the student (the teacher is frozen and
    #: replicated too); ``fsdp`` shards teacher and student LLMs across the workers (FSDP2), across
    #: nodes when the placement spreads them. One worker: no difference. See pldistill/train/parallel.py.
    parallelism: Literal["ddp", "fsdp"] = "ddp"

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("seeds must not repeat (a repeated seed is the same run twice)")
        return v

    @model_validator(mode="after")
    def _seeds_fit_replicates(self) -> TrainConfig:
        problem = self.replicates.seeds_problem(self.seeds) if self.replicates is not None else None
        if problem:
            raise ValueError(problem)
        return self

    def seed_sequence(self) -> list[int]:
        """Every seed a trial may run, in order: ``seeds``, then (with ``replicates``) the added ones."""
        return self.replicates.seed_sequence(self.seeds) if self.replicates is not None else list(self.seeds)


class TrialConfig(_Strict):
    """One fully resolved trial."""

    name: str = "trial"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    hparams: Hyperparameters = Field(default_factory=Hyperparameters)
    train: TrainConfig = Field(default_factory=TrainConfig)
    #: Where the trial writes its best student and resolved config.
    output_dir: Path = Path("runs")
    #: Where once-per-config artefacts go (fine-tuned teacher, synthetic corpus, features).
    cache_dir: Path = Path(".pldistill-cache")

    @model_validator(mode="after")
    def _dataset_matches_source(self) -> TrialConfig:
        if self.data.source == "synthetic" and self.data.dataset != "synthetic":
            raise ValueError("data.dataset must be 'synthetic' when data.source is 'synthetic'")
        return self

    @model_validator(mode="after")
    def _student_fits_objective(self) -> TrialConfig:
        wanted, chosen = objective_family(self.hparams.objective), self.model.student
        if chosen is not None and chosen != wanted:
            raise ValueError(f"objective {self.hparams.objective!r} trains the {wanted} student, but model.student "
                             f"is {chosen!r} (leave model.student unset to follow the objective)")
        return self

    @property
    def student_family(self) -> str:
        """``audiolm`` or ``classifier``: ``model.student``, or the objective's family when unset."""
        return self.model.student or objective_family(self.hparams.objective)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def config_hash(obj: Any, length: int = 16) -> str:
    """A stable content hash of a JSON-able object or pydantic model (cache keys)."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
