"""One trial, as a plain function: train a student per fold, evaluate each epoch, keep the best.

No Ray here: the sweeper's Ray Train workers call :func:`run_trial` with a ``report`` callback,
and tests call it directly. When ``torch.distributed`` is initialised (Ray Train sets it up), the
student is wrapped in DDP, the train split is sharded by rank and evaluation is split across ranks
and gathered.

Reads top to bottom: :func:`run_trial` goes over the folds; :func:`_setup_fold` builds a fold (data,
teacher and its cache, student, objective, wrappers, optimizer, schedule, random state);
:func:`_fold_epochs` hands it, with this student's steps, to the epoch loop both student families
share (:func:`pldistill.train.loop.run_epochs`), which trains an epoch, evaluates, keeps the best and
hands back a checkpoint.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from pldistill._fs import artifacts_read_only, atomic_dir, private_dirs
from pldistill.config import TrainConfig, TrialConfig
from pldistill.losses import build_objective
from pldistill.models.audiolm import AudioLMHead
from pldistill.models.inputs import Example, collate, pseudo_target_inputs
from pldistill.models.loading import Teacher, build_student, load_student_llm
from pldistill.train.batching import rank_bucket_batches
from pldistill.train.checkpoint import FullState, ResumeState, load_state, restore_training, save_state
from pldistill.train.dataset import FoldData, labelled_share, prepare_fold
from pldistill.train.loop import (
    PREDICTIONS_FILE,
    CheckpointWriter,
    Epoch,
    EpochSteps,
    FoldResult,
    Schedule,
    Scored,
    is_new_best,
    log,
    lr_factor,
    rank_world,
    run_epochs,
    write_predictions,
)
from pldistill.train.metrics import closed_set_metrics
from pldistill.train.parallel import (
    clip_grad_norm,
    compute_device,
    full_optimizer_state,
    full_trainable_state,
    gradient_sync,
    is_sharded,
    reshard,
    restore_trainable,
    shard_like,
    snapshot_trainable,
    wrap_models,
)
from pldistill.train.pseudo_target import fold_pseudo_targets
from pldistill.train.replicates import Decision, run_decision
from pldistill.train.scoring import score_labels
from pldistill.train.step import DistillModels, compile_student, distill_step
from pldistill.train.student_prior import ensure_student_llm
from pldistill.train.teacher import answered, ensure_teacher
from pldistill.train.teacher_cache import TeacherCache, ensure_teacher_cache, teacher_cache_complete

# FoldResult, lr_factor and PREDICTIONS_FILE live in pldistill.train.loop (both student families use
# them); a trial's callers have always found them here, so they stay part of this module's surface.
__all__ = ["run_trial", "trial_runs", "PREPARE_HINT", "TrialResult", "FoldResult", "Reporter", "lr_factor", "PREDICTIONS_FILE"]

#: ``report(metrics, epoch_row, checkpoint_dir_or_None)``: called once per epoch on every rank.
#: ``metrics`` holds the trial's best-so-far figures (mean over its (seed, fold) runs, what Tune/Optuna/ASHA and the
#: results table agree on); ``epoch_row`` the raw figures of this epoch; the last call of a trial
#: also carries ``metrics["trial_result"]``, the whole :class:`TrialResult` as JSON, so a scheduler
#: that stops the trial right after its last report loses nothing.
Reporter = Callable[[dict[str, Any], dict[str, Any], "Path | None"], None]
#: Epoch checkpoints are written under the trial's own folder (not the system temp dir), so what a
#: worker killed mid-write leaves behind is found and cleared when the trial starts again.
_CHECKPOINTS = ".checkpoints"


@dataclass
class TrialResult:
    folds: list[FoldResult]  # one per (seed, fold) run, seeds outer
    metrics: dict[str, float]  # mean over the runs of the best-epoch figures
    wall_s: float
    samples_per_s: float
    world_size: int
    restarts: int = 0  # times this trial resumed from a checkpoint (worker, node or sweep restarts)
    #: Seeds run (each over every fold) and why no more: ``precision``, ``cap`` or ``fixed``
    #: (:mod:`pldistill.train.replicates`); the selection metric's stratified half-width at the stop.
    seeds_used: int = 0
    seeds_stop: str | None = None
    seeds_half_width: float | None = None


#: What a trial that finds an artifact missing tells its user to run (trials never build one).
PREPARE_HINT = ("prepare it first: `pldistill-sweep prepare SWEEP_FILE` (launch does it), or "
                "pldistill.prepare.prepare_trial(cfg) from Python")


def run_trial(cfg: TrialConfig, report: Reporter | None = None, resume: Path | None = None) -> TrialResult:
    """Train and evaluate ``cfg`` on each of its folds; returns the per-fold and mean figures.

    Seeds run one after another over all folds: the listed ones, and with ``train.replicates`` more
    until the rule (:func:`pldistill.train.replicates.run_decision`) is decided after a seed's last fold.
    ``resume``: a checkpoint folder this trial reported earlier; training carries on after its epoch
    with the same weights, optimizer and random state, so the result equals an uninterrupted run's.

    Everything the trial reads beyond its own runs (corpus, features, teachers, caches, the student
    prior) is prepared beforehand (:mod:`pldistill.prepare`) and read by path: a missing artifact is
    a :class:`~pldistill.errors.MissingArtifactError`, never built here.
    """
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    with artifacts_read_only(PREPARE_HINT):
        return _run_trial(cfg, report, _Progress.start(cfg, resume))


@dataclass
class _Progress:
    """Where a trial stands: the runs done, the clock, this attempt, and the checkpoint it resumes from."""

    state: ResumeState | None
    done: list[FoldResult]
    clock: dict[str, float]
    attempt: int
    started: float

    @classmethod
    def start(cls, cfg: TrialConfig, resume: Path | None) -> _Progress:
        """From the checkpoint ``resume`` (a restart: one more attempt), or from nothing. Clears what a
        worker killed while writing a checkpoint left behind."""
        state = load_state(resume) if resume is not None else None
        if rank_world()[0] == 0:
            shutil.rmtree(cfg.output_dir / _CHECKPOINTS, ignore_errors=True)
        return cls(state=state, done=[FoldResult(**d) for d in state.done] if state else [],
                   clock=dict(state.clock) if state else {"seen": 0, "train_s": 0.0},
                   attempt=state.attempt + 1 if state else 0, started=time.perf_counter())

    def skips(self, k: int) -> bool:
        """Run ``k`` finished before the checkpoint."""
        return self.state is not None and k < self.state.run_index

    def resumes(self, k: int) -> ResumeState | None:
        """The checkpoint when run ``k`` is the one it was taken in."""
        return self.state if self.state is not None and k == self.state.run_index else None


def _run_trial(cfg: TrialConfig, report: Reporter | None, p: _Progress) -> TrialResult:
    runs = trial_runs(cfg)
    if p.state is not None:
        seed, fold = runs[p.state.run_index]
        log(f"resuming after seed {seed} fold {fold} epoch {p.state.epoch} (attempt {p.attempt})")
        if p.state.epoch >= cfg.train.epochs and "trial_result" in p.state.metrics:
            # The trial's last epoch was done; it stopped before its end was recorded: report it again.
            return _report_again(cfg, p.state, [*p.done, FoldResult(**p.state.current)], p.started, p.clock,
                                 p.attempt, report)
    decision = None
    for k, (seed, fold) in enumerate(runs):
        if p.skips(k):
            continue
        resume = p.resumes(k)
        current = FoldResult(**resume.current) if resume else FoldResult(fold=fold, best_epoch=-1, best={},
                                                                        teacher={}, seed=seed)
        if not (resume and resume.epoch >= cfg.train.epochs):  # else that run had finished
            for epoch in _fold_epochs(cfg, seed, fold, current, p.clock, resume, p.attempt):
                if report is not None:
                    _report_epoch(cfg, report, epoch, k, p.done, current, p.started, p.clock, p.attempt)
        p.done.append(current)
        decision = run_decision(cfg.train, len(cfg.data.folds), p.done)
        if decision is not None and decision.stop:
            break
    return _summarise(p.done, p.started, p.clock, p.attempt, decision)


def _report_epoch(cfg: TrialConfig, report: Reporter, epoch: Epoch, k: int, done: list[FoldResult],
                  current: FoldResult, started: float, clock: dict[str, float], attempt: int) -> None:
    """Report run ``k``'s epoch (the trial's best-so-far means, this epoch's row) with its checkpoint.
    The trial's last epoch (its last seed decided) carries the whole result, ``trial_result``."""
    decision = run_decision(cfg.train, len(cfg.data.folds), [*done, current]) if epoch.last else None
    so_far = _summarise([*done, current], started, clock, attempt, decision)
    metrics: dict[str, Any] = {**so_far.metrics, "seed": current.seed, "fold": current.fold,
                               "epoch": epoch.row["epoch"], "best_epoch": current.best_epoch,
                               # the epoch's own figures and loss terms: each report is a step in the
                               # trackers (MLflow, TensorBoard), which see only what Tune sees
                               **{f"epoch_{k2}": v for k2, v in epoch.row.items()
                                  if k2.startswith(("val_", "test_", "train_loss_"))},
                               **{f"teacher_{k2}": v for k2, v in current.teacher.items()}}
    if decision is not None and decision.stop:
        metrics["trial_result"] = json.dumps(asdict(so_far), default=str)
    ckpt = None
    ckpt_root = cfg.output_dir / _CHECKPOINTS
    if rank_world()[0] == 0:
        private_dirs(ckpt_root)
        ckpt = Path(tempfile.mkdtemp(prefix="epoch-", dir=ckpt_root))
        epoch.save(ckpt, ResumeState(
            run_index=k, epoch=epoch.row["epoch"], step=epoch.step, numpy_rng=epoch.numpy_rng,
            current=asdict(current), done=[asdict(f) for f in done], clock=dict(clock), attempt=attempt,
            metrics=metrics))
    try:
        report(metrics, epoch.row, ckpt)
    finally:
        if ckpt is not None:
            shutil.rmtree(ckpt, ignore_errors=True)


def _report_again(cfg: TrialConfig, state: ResumeState, runs: list[FoldResult], started: float,
                  clock: dict[str, float], attempt: int, report: Reporter | None) -> TrialResult:
    """The end of a trial whose last epoch was checkpointed, reported as then, counting this restart
    (the results' "restarts")."""
    final = _summarise(runs, started, clock, attempt, run_decision(cfg.train, len(cfg.data.folds), runs))
    if report is not None:
        metrics = dict(state.metrics)
        metrics["trial_result"] = json.dumps({**json.loads(metrics["trial_result"]), "restarts": attempt})
        report(metrics, state.current["epochs"][-1], None)
    return final


def trial_runs(cfg: TrialConfig) -> list[tuple[int, int]]:
    """The (seed, fold) runs a trial may train, in order: seeds outer, folds inner. With
    ``train.replicates`` the list goes on to ``max_seeds``; the trial stops after a seed's last fold
    once the rule is decided, so a run's index (what a checkpoint records) never changes meaning."""
    return [(seed, fold) for seed in cfg.train.seed_sequence() for fold in cfg.data.folds]


def _summarise(folds: list[FoldResult], started: float, clock: dict[str, float], restarts: int = 0,
               decision: Decision | None = None) -> TrialResult:
    with_best = [f for f in folds if f.best]
    keys = with_best[0].best.keys() if with_best else ()
    mean = {k: float(np.mean([f.best[k] for f in with_best if k in f.best])) for k in keys}
    stopped = decision is not None and decision.stop
    half = decision.half_width if stopped else math.nan  # type: ignore[union-attr]
    return TrialResult(folds=folds, metrics=mean, wall_s=time.perf_counter() - started,
                       samples_per_s=clock["seen"] / clock["train_s"] if clock["train_s"] else 0.0,
                       world_size=rank_world()[1], restarts=restarts, seeds_used=len({f.seed for f in folds}),
                       seeds_stop=decision.reason if stopped else None,
                       seeds_half_width=half if math.isfinite(half) else None)


@dataclass
class _Fold:
    """Everything one fold trains with, built once by :func:`_setup_fold`, and where it stands."""

    data: FoldData
    #: What the student trains on: the fold's labelled clips, plus (objectives with a teacher) its
    #: unlabelled ones forced on the teacher's answers (``data.labelled_fraction``).
    train: list[Example]
    teacher: Teacher
    encoder: Any  # what evaluation reads the audio from: the teacher cache, or the audio tower
    student: Any  # the PEFT model (its save_pretrained writes adapter + projector)
    head: AudioLMHead  # the student's forward (maybe sharded in place)
    wrapped: nn.Module  # the head as the step calls it (DDP wrapper, or the head)
    models: DistillModels
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    rng: np.random.Generator  # the data order
    out_dir: Path
    device: torch.device
    sharded: bool
    step: int = 0
    first_epoch: int = 0
    best_weights: dict[str, torch.Tensor] = field(default_factory=dict)  # this rank's (shards when sharded)
    best_full: dict[str, torch.Tensor] = field(default_factory=dict)  # sharded: gathered on rank 0
    #: key -> the clip's pseudo target (``pseudo_target: metadata``); None: the gold answer (``label``)
    pseudo_targets: dict[str, str] | None = None


def _setup_fold(cfg: TrialConfig, seed: int, fold: int, res: FoldResult, resume: ResumeState | None) -> _Fold:
    """Data, teacher (and its cache), student, objective, wrappers, optimizer, schedule and random
    state of one run (``seed``, ``fold``); with ``resume`` (a checkpoint of this run) the state after
    its epoch. The teacher, its cache and the features are the fold's: every seed shares them."""
    hp, tc = cfg.hparams, cfg.train
    _, world = rank_world()
    torch.manual_seed(seed)
    data = prepare_fold(cfg, fold)
    # Reading a built cache, a trial needs the teacher's config, tokenizer and encoder, not its LLM.
    light = cfg.model.teacher_mode == "cached" and teacher_cache_complete(cfg, data)
    device = compute_device()
    teacher, res.teacher = ensure_teacher(cfg, data, log=log, encoder_only=light, device=device)
    pseudo = fold_pseudo_targets(cfg, data)  # None under pseudo_target: label
    cache = _teacher_cache(cfg, data, teacher, pseudo)
    tok = teacher.tokenizer
    llm = load_student_llm(ensure_student_llm(cfg, tok, log=log), tok, seed=cfg.model.init_seed)
    student = build_student(teacher, llm, lora_rank=hp.lora_rank, lora_alpha=hp.lora_alpha,
                            lora_dropout=hp.lora_dropout, seed=seed)
    head = AudioLMHead(student.base_model.model).train()
    objective = build_objective(hp.objective, hp.model_dump(), kl_chunk_size=tc.kl_chunk_size)
    if objective.needs_teacher and data.unlabelled:  # its batches mix labelled and unlabelled clips
        objective = build_objective(hp.objective, hp.model_dump(), kl_chunk_size=tc.kl_chunk_size,
                                    labelled_share=labelled_share(data))
    online_teacher = AudioLMHead(teacher.model) if cache is None else None  # cached: the teacher LLM never runs
    # ddp: student in DDP; fsdp: teacher and student sharded in place (before the optimizer sees them).
    online_teacher, wrapped = wrap_models(online_teacher, head, tc.parallelism, audio_tower=teacher.audio_tower,
                                          device=device)
    # compiled unsharded only: FSDP2's per-layer hooks are its own affair
    step_student = wrapped if is_sharded(head) else compile_student(wrapped, tc.compile)
    models = DistillModels(audio_tower=teacher.audio_tower, teacher=online_teacher, student=step_student,
                           vocab=len(tok), objective=objective, weighting=hp.weighting, sharpen_p=hp.sharpen_p,
                           cache=cache, awcka_end_row=hp.awcka_end_row, fused_logits=tc.fused_logits)
    optimizer = _optimizer(head, cfg)
    # Unlabelled clips carry the teacher's signal only: an objective without a teacher (sft) trains on
    # the labelled ones, repeated to take as many steps as the others (_epoch_batches), so a comparison
    # at a labelled fraction differs in what the student learns from, not in how long it trains.
    train = data.train + answered(cfg, data) if objective.needs_teacher else data.train
    per_rank = (len(data.train) + len(data.unlabelled)) // world
    micro = -(-per_rank // tc.batch_size)
    if tc.max_steps_per_epoch:
        micro = min(micro, tc.max_steps_per_epoch * tc.grad_accum)
    total = tc.epochs * max(1, micro // tc.grad_accum)
    schedule = Schedule(per_rank, micro, total, int(hp.warmup_ratio * total),
                         tuple(g["lr"] for g in optimizer.param_groups))
    out_dir = cfg.output_dir / f"seed_{seed}" / f"fold_{fold}"
    res.student_dir = str(out_dir / "best")
    # Dropout draws from torch's global RNG: seed it here, after the caches (a teacher fine-tuned in
    # this process, or read from disk) have drawn whatever they draw, so a fold trains the same either way.
    torch.manual_seed(seed + fold)
    f = _Fold(data=data, train=train, teacher=teacher, encoder=cache if cache is not None else teacher.audio_tower,
              student=student, head=head, wrapped=wrapped, models=models, optimizer=optimizer, schedule=schedule,
              rng=np.random.default_rng(seed + fold), out_dir=out_dir, device=device,
              sharded=is_sharded(head), pseudo_targets=pseudo if objective.needs_teacher else None)
    if resume is not None:
        f.best_weights = restore_training(resume, student, optimizer, head=head)
        if f.sharded:
            f.best_full, f.best_weights = f.best_weights, shard_like(head, f.best_weights)
        f.step, f.first_epoch = resume.step, resume.epoch
        f.rng.bit_generator.state = resume.numpy_rng
    return f


def _fold_epochs(cfg: TrialConfig, seed: int, fold: int, res: FoldResult, clock: dict[str, float],
                 resume: ResumeState | None = None, attempt: int = 0) -> Iterator[Epoch]:
    """Train one run, yielding after each epoch with ``res`` (best epoch, figures) brought up to date.
    With ``resume`` (a checkpoint of this run), start after its epoch with its weights and state."""
    if cfg.student_family == "classifier":  # EmoDistill's student: its own loop, the same contract
        from pldistill.train.classifier_trial import classifier_fold_epochs

        yield from classifier_fold_epochs(cfg, seed, fold, res, clock, resume, attempt)
        return
    f = _setup_fold(cfg, seed, fold, res, resume)
    steps = EpochSteps(train_epoch=functools.partial(_train_epoch, f, cfg.train),
                       evaluate=functools.partial(_evaluate, f, batch_size=cfg.train.eval_batch_size),
                       keep_if_best=functools.partial(_keep_if_best, f, cfg, res),
                       restore_best=lambda: restore_trainable(f.head, f.best_weights),
                       checkpoint=functools.partial(_checkpoint_writer, f))
    yield from run_epochs(f, steps, cfg, seed, fold, res, clock, attempt)


def _train_epoch(f: _Fold, tc: TrainConfig) -> dict[str, float]:
    """One epoch of gradient steps; returns the mean of each loss term over its micro-batches."""
    rank, world = rank_world()
    s = f.schedule
    batches = _epoch_batches(f, tc, rank, world)
    sums: dict[str, float] = {}
    f.optimizer.zero_grad(set_to_none=True)
    for m in range(s.micro_per_epoch):
        examples = [f.train[i] for i in batches[m]]
        batch = collate(examples, f.teacher.tokenizer, f.data.labels).to(f.device)
        pseudo = None if f.pseudo_targets is None else \
            pseudo_target_inputs(examples, f.teacher.tokenizer, f.data.labels, f.pseudo_targets).to(f.device)
        last_micro = (m + 1) % tc.grad_accum == 0 or m + 1 == s.micro_per_epoch
        with gradient_sync(f.wrapped, enabled=last_micro):  # DDP all-reduces on the last micro-batch only
            out = distill_step(f.models, batch, pseudo)
            (out.total / tc.grad_accum).backward()
        for k, v in {"total": out.total, **out.terms}.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        if last_micro:
            s.set_lr(f.optimizer, f.step)
            if tc.max_grad_norm:
                clip_grad_norm([p for p in f.head.parameters() if p.requires_grad], tc.max_grad_norm)
            f.optimizer.step()
            f.optimizer.zero_grad(set_to_none=True)
            f.step += 1
    return {k: v / max(1, s.micro_per_epoch) for k, v in sums.items()}


def _epoch_batches(f: _Fold, tc: TrainConfig, rank: int, world: int) -> list[np.ndarray]:
    """This rank's micro-batches of the epoch, as indices into ``f.train``.

    Clips of similar audio length share a micro-batch (little padding); every rank draws the same
    order from the same generator state and takes its share, so all take micro_per_epoch steps.
    The losses are per-sample means, so a batch of B equals B clips accumulated (test_microbatch).
    A training set smaller than the epoch (sft's labelled clips) is drawn again until it fills it.
    """
    lengths = [ex.num_audio_tokens for ex in f.train]
    batches: list[np.ndarray] = []
    while len(batches) < f.schedule.micro_per_epoch:
        drawn = rank_bucket_batches(lengths, tc.batch_size, f.rng, world=world, rank=rank,
                                    batches_per_bucket=tc.batches_per_bucket)
        if not drawn:
            raise ValueError(f"{len(lengths)} training clips cannot feed {world} workers")
        batches += drawn
    return batches


def _keep_if_best(f: _Fold, cfg: TrialConfig, res: FoldResult, row: dict[str, Any], losses: dict[str, float],
                  predictions: list[Scored] | None) -> dict[str, torch.Tensor] | None:
    """Make this epoch the fold's best when it is (rank 0 decides for all): its figures, this rank's
    copy of the trainable weights, and the saved student with its test predictions. Sharded: returns
    this epoch's full trainable state (rank 0; None elsewhere), gathered for the save and the checkpoint."""
    # Sharded: gathering the full trainable state is a collective, so every rank does it (rank 0 gets it).
    gathered = full_trainable_state(f.head) if f.sharded else None
    if is_new_best(res, row, losses, cfg.train.select_metric):
        f.best_weights = snapshot_trainable(f.head)  # this rank's shards; restored for the final test
        if gathered is not None:
            f.best_full = gathered
        if rank_world()[0] == 0:
            _save_student(f.student, cfg, f.out_dir / "best", res.seed, f.data.fold, res.best_epoch, gathered)
            if predictions is not None:
                res.predictions_sha256 = write_predictions(f.out_dir / "best", predictions, f.data.labels)
    return gathered


def _optimizer(head: AudioLMHead, cfg: TrialConfig) -> torch.optim.Optimizer:
    hp = cfg.hparams
    proj, rest = [], []
    for name, p in head.named_parameters():
        if p.requires_grad:
            (proj if "multi_modal_projector" in name else rest).append(p)
    groups = [{"params": rest, "lr": hp.lr}, {"params": proj, "lr": hp.projector_lr or hp.lr}]
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=hp.weight_decay)


def _teacher_cache(cfg: TrialConfig, data: FoldData, teacher, pseudo: dict[str, str] | None) -> TeacherCache | None:
    """``teacher_mode: cached``: the fold's teacher cache (prepared before the trial), forced on the
    fold's ``pseudo`` targets under ``pseudo_target: metadata``."""
    if cfg.model.teacher_mode != "cached":
        return None
    return TeacherCache(ensure_teacher_cache(cfg, data, teacher, log=log, batch_size=cfg.train.eval_batch_size,
                                             pseudo_targets=pseudo))


def _evaluate(f: _Fold, examples: list[Example], batch_size: int) -> tuple[dict[str, float], list[Scored]]:
    """Closed-set UA/WA/F1, the CE of the gold answers and the conflict clips' UA
    (:func:`closed_set_metrics`), and every clip's ``(key, label, scores, lexical)``; split across
    ranks and gathered when distributed.

    Every rank scores the same number of clips (the short shares padded with the first clip, whose
    scores are dropped): under FSDP each forward is a collective, so the ranks' forwards must pair up.
    """
    rank, world = rank_world()
    f.head.train(False)  # eval mode
    part = examples[rank::world]
    padded = part + examples[:1] * (-(-len(examples) // world) - len(part))
    tok = f.teacher.tokenizer
    scores = score_labels(f.head, f.encoder, padded, tok, f.data.labels, vocab=len(tok),
                          batch_size=batch_size)[:len(part)]
    reshard(f.head)  # a sharded root stays gathered after a forward without backward
    f.head.train()
    scored = [(ex.key, ex.label, s, ex.lexical) for ex, s in zip(part, scores.tolist())]
    if world > 1:
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, scored)
        scored = [p for g in gathered for p in g]
    metrics = closed_set_metrics([c[1] for c in scored], np.array([c[2] for c in scored]), [c[3] for c in scored])
    return metrics, scored


def _save_student(student, cfg: TrialConfig, path: Path, seed: int, fold: int, epoch: int,
                  state: dict[str, torch.Tensor] | None = None) -> None:
    """LoRA adapter + projector (``save_pretrained``) and the resolved config, atomically.

    ``state``: the full trainable parameters (the head's names) when the model is sharded."""
    peft_state = {f"base_model.{k}": v for k, v in state.items()} if state is not None else None
    with atomic_dir(path) as tmp:
        student.save_pretrained(tmp, safe_serialization=True, state_dict=peft_state)
        meta = {"seed": seed, "fold": fold, "epoch": epoch, "config": json.loads(cfg.to_json())}
        (tmp / "pldistill_config.json").write_text(json.dumps(meta, indent=2))


def _checkpoint_writer(f: _Fold, gathered: dict[str, torch.Tensor] | None) -> CheckpointWriter:
    """This epoch's checkpoint writer. Sharded, rank 0 writes the checkpoint from gathered copies: the
    weights :func:`_keep_if_best` gathered, and the optimizer state, gathered here (a collective, so
    every rank calls this)."""
    full = None
    if f.sharded:
        optim = full_optimizer_state(f.head, f.optimizer)
        full = FullState(gathered, optim) if gathered is not None else None
    return functools.partial(_save_checkpoint, f, full=full)


def _save_checkpoint(f: _Fold, path: Path, state: ResumeState, *, full: FullState | None) -> None:
    """The epoch's resumable checkpoint (see :mod:`pldistill.train.checkpoint`) into ``path``."""
    save_state(path, f.student, f.optimizer, state, best=f.best_full if f.sharded else f.best_weights, full=full)
