"""One trial, as a plain function: train a student per fold, evaluate each epoch, keep the best.

No Ray here: the sweeper's Ray Train workers call :func:`run_trial` with a ``report`` callback,
and tests call it directly. When ``torch.distributed`` is initialised (Ray Train sets it up), the
student is wrapped in DDP, the train split is sharded by rank and evaluation is split across ranks
and gathered.

Reads top to bottom: data -> teacher -> student -> optimizer -> epochs (train, evaluate, keep best).
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

from pldistill._fs import atomic_dir
from pldistill.config import TrialConfig
from pldistill.losses import build_objective
from pldistill.models.audiolm import AudioLMHead
from pldistill.models.inputs import Example, collate
from pldistill.models.loading import build_student, load_student_llm
from pldistill.train.checkpoint import FullState, ResumeState, load_state, restore_training, save_state
from pldistill.train.dataset import FoldData, prepare_fold
from pldistill.train.metrics import classification_metrics
from pldistill.train.parallel import (
    clip_grad_norm,
    collective_device,
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
from pldistill.train.scoring import predict, score_labels
from pldistill.train.step import DistillModels, distill_step
from pldistill.train.student_prior import ensure_student_llm
from pldistill.train.teacher import ensure_teacher
from pldistill.train.teacher_cache import TeacherCache, ensure_teacher_cache, teacher_cache_complete

__all__ = ["run_trial", "TrialResult", "FoldResult", "Reporter", "lr_factor"]

#: ``report(metrics, epoch_row, checkpoint_dir_or_None)``: called once per epoch on every rank.
#: ``metrics`` holds the trial's best-so-far figures (mean over folds, what Tune/Optuna/ASHA and the
#: results table agree on); ``epoch_row`` the raw figures of this epoch; the last call of a trial
#: also carries ``metrics["trial_result"]``, the whole :class:`TrialResult` as JSON, so a scheduler
#: that stops the trial right after its last report loses nothing.
Reporter = Callable[[dict[str, Any], dict[str, Any], "Path | None"], None]


@dataclass
class FoldResult:
    fold: int
    best_epoch: int
    best: dict[str, float]  # val_/test_ ua, wa, f1 and loss_<term> at the best epoch
    teacher: dict[str, float]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    student_dir: str | None = None


@dataclass
class TrialResult:
    folds: list[FoldResult]
    metrics: dict[str, float]  # mean over folds of the best-epoch figures
    wall_s: float
    samples_per_s: float
    world_size: int
    restarts: int = 0  # times this trial resumed from a checkpoint (worker, node or sweep restarts)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0.1 (nanoGPT's ``get_lr`` shape)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _log(msg: str) -> None:
    rank, _ = _rank_world()
    if rank == 0:
        print(f"[pldistill] {msg}", flush=True)


def run_trial(cfg: TrialConfig, report: Reporter | None = None, resume: Path | None = None) -> TrialResult:
    """Train and evaluate ``cfg`` on each of its folds; returns the per-fold and mean figures.

    ``resume``: a checkpoint folder this trial reported earlier; training carries on after its epoch
    with the same weights, optimizer and random state, so the result equals an uninterrupted run's.
    """
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    state = load_state(resume) if resume is not None else None
    started = time.perf_counter()
    done = [FoldResult(**d) for d in state.done] if state else []
    clock = dict(state.clock) if state else {"seen": 0, "train_s": 0.0}
    attempt = state.attempt + 1 if state else 0
    if state is not None:
        _log(f"resuming after fold {cfg.data.folds[state.fold_index]} epoch {state.epoch} (attempt {attempt})")
        if state.fold_index == len(cfg.data.folds) - 1 and state.epoch >= cfg.train.epochs:
            # Every epoch was done; the run stopped before its end was recorded: report it again.
            final = _summarise([*done, FoldResult(**state.current)], started, clock, attempt)
            if report is not None:
                report(state.metrics, state.current["epochs"][-1], None)
            return final
    for k, fold in enumerate(cfg.data.folds):
        if state is not None and k < state.fold_index:
            continue
        resuming = state is not None and k == state.fold_index
        current = FoldResult(**state.current) if resuming else FoldResult(fold=fold, best_epoch=-1, best={},
                                                                                teacher={})
        if resuming and state.epoch >= cfg.train.epochs:  # that fold had finished
            done.append(current)
            continue
        for epoch in _fold_epochs(cfg, fold, current, clock, state if resuming else None, attempt):
            if report is None:
                continue
            so_far = _summarise([*done, current], started, clock, attempt)
            metrics: dict[str, Any] = {**so_far.metrics, "fold": fold, "epoch": epoch.row["epoch"],
                                       "best_epoch": current.best_epoch,
                                       **{f"epoch_{k2}": v for k2, v in epoch.row.items() if k2.startswith("val_")},
                                       **{f"teacher_{k2}": v for k2, v in current.teacher.items()}}
            if epoch.last and k == len(cfg.data.folds) - 1:
                metrics["trial_result"] = json.dumps(asdict(so_far), default=str)
            ckpt = epoch.checkpoint(ResumeState(
                fold_index=k, epoch=epoch.row["epoch"], step=0, numpy_rng={}, current=asdict(current),
                done=[asdict(f) for f in done], clock=dict(clock), attempt=attempt, metrics=metrics)) \
                if _rank_world()[0] == 0 else None
            try:
                report(metrics, epoch.row, ckpt)
            finally:
                if ckpt is not None:
                    shutil.rmtree(ckpt, ignore_errors=True)
        done.append(current)
    return _summarise(done, started, clock, attempt)


def _summarise(folds: list[FoldResult], started: float, clock: dict[str, float], restarts: int = 0) -> TrialResult:
    with_best = [f for f in folds if f.best]
    keys = with_best[0].best.keys() if with_best else ()
    mean = {k: float(np.mean([f.best[k] for f in with_best if k in f.best])) for k in keys}
    return TrialResult(folds=folds, metrics=mean, wall_s=time.perf_counter() - started,
                       samples_per_s=clock["seen"] / clock["train_s"] if clock["train_s"] else 0.0,
                       world_size=_rank_world()[1], restarts=restarts)


@dataclass
class _Epoch:
    row: dict[str, Any]
    last: bool
    #: Writes the epoch's resumable checkpoint (the caller fills the trial-level fields) and returns it.
    checkpoint: Callable[[ResumeState], Path]


def _fold_epochs(cfg: TrialConfig, fold: int, res: FoldResult, clock: dict[str, float],
                 resume: ResumeState | None = None, attempt: int = 0) -> Iterator[_Epoch]:
    """Train one fold, yielding after each epoch with ``res`` (best epoch, figures) brought up to date.
    With ``resume`` (a checkpoint of this fold), start after its epoch with its weights and state."""
    hp, tc = cfg.hparams, cfg.train
    rank, world = _rank_world()
    torch.manual_seed(tc.seed)
    data = prepare_fold(cfg, fold)
    # Reading a built cache, a trial needs the teacher's config, tokenizer and encoder, not its LLM.
    light = cfg.model.teacher_mode == "cached" and teacher_cache_complete(cfg, data)
    device = compute_device()
    teacher, res.teacher = ensure_teacher(cfg, data, log=_log, encoder_only=light, device=device)
    cache = _teacher_cache(cfg, data, teacher)
    encoder = cache if cache is not None else teacher.audio_tower  # what evaluation reads the audio from
    tok = teacher.tokenizer
    llm = load_student_llm(ensure_student_llm(cfg, tok, log=_log), tok, seed=cfg.model.init_seed)
    student = build_student(teacher, llm, lora_rank=hp.lora_rank, lora_alpha=hp.lora_alpha,
                            lora_dropout=hp.lora_dropout, seed=tc.seed)
    head = AudioLMHead(student.base_model.model).train()
    objective = build_objective(hp.objective, alpha=hp.alpha, beta=hp.beta, gamma=hp.gamma,
                                temperature=hp.temperature, kl_t2_scaling=hp.kl_t2_scaling,
                                cka_estimator=hp.cka_estimator, relation_weight=hp.llava_kd_relation,
                                kl_chunk_size=tc.kl_chunk_size)
    online_teacher = AudioLMHead(teacher.model) if cache is None else None  # cached: the teacher LLM never runs
    # ddp: student in DDP; fsdp: teacher and student sharded in place (before the optimizer sees them).
    online_teacher, wrapped = wrap_models(online_teacher, head, tc.parallelism, audio_tower=teacher.audio_tower,
                                          device=device)
    models = DistillModels(audio_tower=teacher.audio_tower, teacher=online_teacher,
                           student=wrapped, vocab=len(tok), objective=objective, weighting=hp.weighting,
                           sharpen_p=hp.sharpen_p, cache=cache)
    optimizer = _optimizer(head, cfg)
    # Every rank takes the same number of steps (DDP needs it): drop the remainder of the split.
    per_rank = len(data.train) // world
    micro_per_epoch = -(-per_rank // tc.batch_size)
    if tc.max_steps_per_epoch:
        micro_per_epoch = min(micro_per_epoch, tc.max_steps_per_epoch * tc.grad_accum)
    total_steps = tc.epochs * max(1, micro_per_epoch // tc.grad_accum)
    warmup = int(hp.warmup_ratio * total_steps)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    out_dir = cfg.output_dir / f"fold_{fold}"
    res.student_dir = str(out_dir / "best")
    step, first_epoch = 0, 0
    best_weights: dict[str, torch.Tensor] = {}  # this rank's copy (its shards when sharded)
    best_full: dict[str, torch.Tensor] = {}  # sharded: the same gathered on rank 0, for checkpoints
    sharded = is_sharded(head)
    # Dropout draws from torch's global RNG: seed it here, after the caches (a teacher fine-tuned in
    # this process, or read from disk) have drawn whatever they draw, so a fold trains the same either way.
    torch.manual_seed(tc.seed + fold)
    rng = np.random.default_rng(tc.seed + fold)
    if resume is not None:
        best_weights = restore_training(resume, student, optimizer, head=head)
        if sharded:
            best_full, best_weights = best_weights, shard_like(head, best_weights)
        step, first_epoch = resume.step, resume.epoch
        rng.bit_generator.state = resume.numpy_rng
    for epoch in range(first_epoch, tc.epochs):
        t0 = time.perf_counter()
        order = rng.permutation(len(data.train))[:per_rank * world][rank::world]
        sums: dict[str, float] = {}
        n_micro = 0
        optimizer.zero_grad(set_to_none=True)
        for m in range(micro_per_epoch):
            idx = order[m * tc.batch_size:(m + 1) * tc.batch_size]
            batch = collate([data.train[i] for i in idx], tok, data.labels).to(device)
            last_micro = (m + 1) % tc.grad_accum == 0 or m + 1 == micro_per_epoch
            with gradient_sync(wrapped, enabled=last_micro):
                out = distill_step(models, batch)
                (out.total / tc.grad_accum).backward()
            for k, v in {"total": out.total, **out.terms}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n_micro += 1
            if last_micro:
                for g, base in zip(optimizer.param_groups, base_lrs):
                    g["lr"] = base * lr_factor(step, total_steps, warmup)
                if tc.max_grad_norm:
                    clip_grad_norm([p for p in head.parameters() if p.requires_grad], tc.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
        epoch_train = time.perf_counter() - t0
        clock["train_s"] += epoch_train
        clock["seen"] += world * min(per_rank, micro_per_epoch * tc.batch_size)
        losses = {k: v / max(1, n_micro) for k, v in sums.items()}
        if not _all_ranks_finite(losses):  # every rank stops together, or the others hang in a collective
            raise FloatingPointError(f"non-finite loss in fold {fold} epoch {epoch + 1}: {losses}")
        row: dict[str, Any] = {"fold": fold, "epoch": epoch + 1, **{f"train_loss_{k}": v for k, v in losses.items()},
                               **{f"val_{k}": v for k, v in
                                  _evaluate(head, encoder, data.val, tok, data.labels,
                                            tc.eval_batch_size).items()},
                               "samples_per_s": world * min(per_rank, micro_per_epoch * tc.batch_size) / epoch_train,
                               "lr": optimizer.param_groups[0]["lr"], "wall_s": epoch_train, "attempt": attempt}
        if tc.eval_test_each_epoch:
            row.update({f"test_{k}": v for k, v in _evaluate(head, encoder, data.test, tok, data.labels,
                                                             tc.eval_batch_size).items()})
        res.epochs.append(row)
        # Sharded: gathering the full trainable state is a collective, so every rank does it (rank 0 gets it).
        gathered = full_trainable_state(head) if sharded else None
        if _agreed(res.best_epoch < 0 or _better(row, res.best, tc.select_metric)):
            res.best_epoch = epoch + 1
            res.best = {k: v for k, v in row.items() if k.startswith(("val_", "test_"))}
            res.best.update({f"loss_{k}": v for k, v in losses.items()})
            best_weights = snapshot_trainable(head)  # this rank's shards; restored for the final test
            if gathered is not None:
                best_full = gathered
            if rank == 0:
                _save_student(student, cfg, out_dir / "best", fold, res.best_epoch, gathered)
        last = epoch + 1 == tc.epochs
        if last and not tc.eval_test_each_epoch:  # test once, with the best epoch's student
            res.best.update({f"test_{k}": v for k, v in
                             _evaluate_saved(head, best_weights, teacher, data, tc.eval_batch_size,
                                             encoder).items()})
        _log(f"fold {fold} epoch {epoch + 1}/{tc.epochs}: loss {losses['total']:.4f} val UA {row['val_ua']:.3f}"
             + (f" test UA {row['test_ua']:.3f}" if "test_ua" in row else ""))
        full = None
        if sharded:  # rank 0 writes the checkpoint from gathered copies (gathering is a collective)
            optim = full_optimizer_state(head, optimizer)
            if gathered is not None:
                full = FullState(gathered, optim)
        yield _Epoch(row=row, last=last, checkpoint=functools.partial(
            _epoch_checkpoint, student, optimizer, step=step, numpy_rng=rng.bit_generator.state,
            best=best_full if sharded else best_weights, full=full))


def _all_ranks_finite(losses: dict[str, float]) -> bool:
    finite = all(math.isfinite(v) for v in losses.values())
    if _rank_world()[1] > 1:
        flag = torch.tensor([0.0 if finite else 1.0], device=collective_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        finite = flag.item() == 0.0
    return finite


def _agreed(flag: bool) -> bool:
    """Rank 0's decision for all (the ranks' train losses differ, so ``val_loss`` selection could split)."""
    if _rank_world()[1] == 1:
        return flag
    t = torch.tensor([float(flag)], device=collective_device())
    dist.broadcast(t, 0)
    return bool(t.item())


def _better(row: dict[str, Any], best: dict[str, float], metric: str) -> bool:
    if metric == "val_loss":
        return row["train_loss_total"] < best.get("loss_total", float("inf"))
    return row[metric] > best[metric]


def _optimizer(head: AudioLMHead, cfg: TrialConfig) -> torch.optim.Optimizer:
    hp = cfg.hparams
    proj, rest = [], []
    for name, p in head.named_parameters():
        if p.requires_grad:
            (proj if "multi_modal_projector" in name else rest).append(p)
    groups = [{"params": rest, "lr": hp.lr}, {"params": proj, "lr": hp.projector_lr or hp.lr}]
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=hp.weight_decay)


def _teacher_cache(cfg: TrialConfig, data: FoldData, teacher) -> TeacherCache | None:
    """``teacher_mode: cached``: the fold's teacher cache (built here, in process, if the sweep has not)."""
    if cfg.model.teacher_mode != "cached":
        return None
    return TeacherCache(ensure_teacher_cache(cfg, data, teacher, log=_log, batch_size=cfg.train.eval_batch_size))


def _evaluate(head: AudioLMHead, audio_tower, examples: list[Example], tok, labels, batch_size: int) -> dict:
    """Closed-set UA/WA/F1; split across ranks and gathered when distributed.

    Every rank scores the same number of clips (the short shares padded with the first clip, whose
    scores are dropped): under FSDP each forward is a collective, so the ranks' forwards must pair up.
    """
    rank, world = _rank_world()
    head.eval()
    part = examples[rank::world]
    padded = part + examples[:1] * (-(-len(examples) // world) - len(part))
    scores = score_labels(head, audio_tower, padded, tok, labels, vocab=len(tok),
                          batch_size=batch_size)[:len(part)]
    reshard(head)  # a sharded root stays gathered after a forward without backward
    head.train()
    pairs = list(zip([ex.label for ex in part], predict(scores)))
    if world > 1:
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, pairs)
        pairs = [p for g in gathered for p in g]
    return classification_metrics([t for t, _ in pairs], [p for _, p in pairs])


def _save_student(student, cfg: TrialConfig, path: Path, fold: int, epoch: int,
                  state: dict[str, torch.Tensor] | None = None) -> None:
    """LoRA adapter + projector (``save_pretrained``) and the resolved config, atomically.

    ``state``: the full trainable parameters (the head's names) when the model is sharded."""
    peft_state = {f"base_model.{k}": v for k, v in state.items()} if state is not None else None
    with atomic_dir(path) as tmp:
        student.save_pretrained(tmp, safe_serialization=True, state_dict=peft_state)
        meta = {"fold": fold, "epoch": epoch, "config": json.loads(cfg.to_json())}
        (tmp / "pldistill_config.json").write_text(json.dumps(meta, indent=2))


def _epoch_checkpoint(student, optimizer, state: ResumeState, *, step: int, numpy_rng: dict,
                      best: dict[str, torch.Tensor], full: FullState | None) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="pldistill-ckpt-"))
    state.step, state.numpy_rng = step, numpy_rng
    save_state(tmp, student, optimizer, state, best=best, full=full)
    return tmp


def _evaluate_saved(head, best_weights: dict[str, torch.Tensor], teacher, data: FoldData, batch_size: int,
                    encoder=None) -> dict:
    """Test with the best epoch's weights, put back from each rank's own copy (no file read: under
    FSDP the weights are shards, and on several nodes only rank 0's node has the saved file)."""
    restore_trainable(head, best_weights)
    encoder = teacher.audio_tower if encoder is None else encoder
    return _evaluate(head, encoder, data.test, teacher.tokenizer, data.labels, batch_size)
