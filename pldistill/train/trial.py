"""One trial, as a plain function: train a student per fold, evaluate each epoch, keep the best.

No Ray here: the sweeper's Ray Train workers call :func:`run_trial` with a ``report`` callback,
and tests call it directly. When ``torch.distributed`` is initialised (Ray Train sets it up), the
student is wrapped in DDP, the train split is sharded by rank and evaluation is split across ranks
and gathered.

Reads top to bottom: data -> teacher -> student -> optimizer -> epochs (train, evaluate, keep best).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from pldistill.config import TrialConfig
from pldistill.losses import build_objective
from pldistill.models.audiolm import AudioLMHead
from pldistill.models.inputs import Example, collate
from pldistill.models.loading import build_student, load_student_llm
from pldistill.train._cache import atomic_dir
from pldistill.train.dataset import FoldData, prepare_fold
from pldistill.train.metrics import classification_metrics
from pldistill.train.scoring import predict, score_labels
from pldistill.train.step import DistillModels, distill_step
from pldistill.train.student_prior import ensure_student_llm
from pldistill.train.teacher import ensure_teacher

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


def run_trial(cfg: TrialConfig, report: Reporter | None = None) -> TrialResult:
    """Train and evaluate ``cfg`` on each of its folds; returns the per-fold and mean figures."""
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    started = time.perf_counter()
    done: list[FoldResult] = []
    clock = {"seen": 0, "train_s": 0.0}
    for k, fold in enumerate(cfg.data.folds):
        current = FoldResult(fold=fold, best_epoch=-1, best={}, teacher={})
        for epoch in _fold_epochs(cfg, fold, current, clock):
            if report is None:
                continue
            so_far = _summarise([*done, current], started, clock)
            metrics: dict[str, Any] = {**so_far.metrics, "fold": fold, "epoch": epoch.row["epoch"],
                                       "best_epoch": current.best_epoch,
                                       **{f"epoch_{k2}": v for k2, v in epoch.row.items() if k2.startswith("val_")},
                                       **{f"teacher_{k2}": v for k2, v in current.teacher.items()}}
            if epoch.last and k == len(cfg.data.folds) - 1:
                metrics["trial_result"] = json.dumps(asdict(so_far), default=str)
            ckpt = epoch.checkpoint() if _rank_world()[0] == 0 else None
            try:
                report(metrics, epoch.row, ckpt)
            finally:
                if ckpt is not None:
                    shutil.rmtree(ckpt, ignore_errors=True)
        done.append(current)
    return _summarise(done, started, clock)


def _summarise(folds: list[FoldResult], started: float, clock: dict[str, float]) -> TrialResult:
    with_best = [f for f in folds if f.best]
    keys = with_best[0].best.keys() if with_best else ()
    mean = {k: float(np.mean([f.best[k] for f in with_best if k in f.best])) for k in keys}
    return TrialResult(folds=folds, metrics=mean, wall_s=time.perf_counter() - started,
                       samples_per_s=clock["seen"] / clock["train_s"] if clock["train_s"] else 0.0,
                       world_size=_rank_world()[1])


@dataclass
class _Epoch:
    row: dict[str, Any]
    last: bool
    checkpoint: Callable[[], Path]


def _fold_epochs(cfg: TrialConfig, fold: int, res: FoldResult, clock: dict[str, float]) -> Iterator[_Epoch]:
    """Train one fold, yielding after each epoch with ``res`` (best epoch, figures) brought up to date."""
    hp, tc = cfg.hparams, cfg.train
    rank, world = _rank_world()
    torch.manual_seed(tc.seed)
    data = prepare_fold(cfg, fold)
    teacher, res.teacher = ensure_teacher(cfg, data, log=_log)
    tok = teacher.tokenizer
    llm = load_student_llm(ensure_student_llm(cfg, tok, log=_log), tok, seed=cfg.model.init_seed)
    student = build_student(teacher, llm, lora_rank=hp.lora_rank, lora_alpha=hp.lora_alpha,
                            lora_dropout=hp.lora_dropout, seed=tc.seed)
    head = AudioLMHead(student.base_model.model).train()
    wrapped = head
    if world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(head)
    objective = build_objective(hp.objective, alpha=hp.alpha, beta=hp.beta, gamma=hp.gamma,
                                temperature=hp.temperature, kl_t2_scaling=hp.kl_t2_scaling,
                                cka_estimator=hp.cka_estimator, relation_weight=hp.llava_kd_relation,
                                kl_chunk_size=tc.kl_chunk_size)
    models = DistillModels(audio_tower=teacher.audio_tower, teacher=AudioLMHead(teacher.model),
                           student=wrapped, vocab=len(tok), objective=objective, weighting=hp.weighting,
                           sharpen_p=hp.sharpen_p)
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
    step = 0
    rng = np.random.default_rng(tc.seed + fold)
    for epoch in range(tc.epochs):
        t0 = time.perf_counter()
        order = rng.permutation(len(data.train))[:per_rank * world][rank::world]
        sums: dict[str, float] = {}
        n_micro = 0
        optimizer.zero_grad(set_to_none=True)
        for m in range(micro_per_epoch):
            idx = order[m * tc.batch_size:(m + 1) * tc.batch_size]
            batch = collate([data.train[i] for i in idx], tok, data.labels)
            last_micro = (m + 1) % tc.grad_accum == 0 or m + 1 == micro_per_epoch
            sync = wrapped.no_sync() if (world > 1 and not last_micro) else nullcontext()
            with sync:
                out = distill_step(models, batch)
                (out.total / tc.grad_accum).backward()
            for k, v in {"total": out.total, **out.terms}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n_micro += 1
            if last_micro:
                for g, base in zip(optimizer.param_groups, base_lrs):
                    g["lr"] = base * lr_factor(step, total_steps, warmup)
                if tc.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_([p for p in head.parameters() if p.requires_grad],
                                                   tc.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
        epoch_train = time.perf_counter() - t0
        clock["train_s"] += epoch_train
        clock["seen"] += world * min(per_rank, micro_per_epoch * tc.batch_size)
        losses = {k: v / max(1, n_micro) for k, v in sums.items()}
        if not all(math.isfinite(v) for v in losses.values()):
            raise FloatingPointError(f"non-finite loss in fold {fold} epoch {epoch + 1}: {losses}")
        row: dict[str, Any] = {"fold": fold, "epoch": epoch + 1, **{f"train_loss_{k}": v for k, v in losses.items()},
                               **{f"val_{k}": v for k, v in
                                  _evaluate(head, teacher.audio_tower, data.val, tok, data.labels,
                                            tc.eval_batch_size).items()},
                               "samples_per_s": world * min(per_rank, micro_per_epoch * tc.batch_size) / epoch_train,
                               "lr": optimizer.param_groups[0]["lr"], "wall_s": epoch_train}
        if tc.eval_test_each_epoch:
            row.update({f"test_{k}": v for k, v in _evaluate(head, teacher.audio_tower, data.test, tok, data.labels,
                                                             tc.eval_batch_size).items()})
        res.epochs.append(row)
        if res.best_epoch < 0 or _better(row, res.best, tc.select_metric):
            res.best_epoch = epoch + 1
            res.best = {k: v for k, v in row.items() if k.startswith(("val_", "test_"))}
            res.best.update({f"loss_{k}": v for k, v in losses.items()})
            if rank == 0:
                _save_student(student, cfg, out_dir / "best", fold, res.best_epoch)
        last = epoch + 1 == tc.epochs
        if last and not tc.eval_test_each_epoch:  # test once, with the best epoch's student
            res.best.update({f"test_{k}": v for k, v in
                             _evaluate_saved(student, head, out_dir / "best", teacher, data,
                                             tc.eval_batch_size).items()})
        _log(f"fold {fold} epoch {epoch + 1}/{tc.epochs}: loss {losses['total']:.4f} val UA {row['val_ua']:.3f}"
             + (f" test UA {row['test_ua']:.3f}" if "test_ua" in row else ""))
        yield _Epoch(row=row, last=last, checkpoint=lambda: _epoch_checkpoint(student))


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


def _evaluate(head: AudioLMHead, audio_tower, examples: list[Example], tok, labels, batch_size: int) -> dict:
    """Closed-set UA/WA/F1; split across ranks and gathered when distributed."""
    rank, world = _rank_world()
    head.eval()
    part = examples[rank::world]
    scores = score_labels(head, audio_tower, part, tok, labels, vocab=len(tok), batch_size=batch_size)
    head.train()
    pairs = list(zip([ex.label for ex in part], predict(scores)))
    if world > 1:
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, pairs)
        pairs = [p for g in gathered for p in g]
    return classification_metrics([t for t, _ in pairs], [p for _, p in pairs])


def _save_student(student, cfg: TrialConfig, path: Path, fold: int, epoch: int) -> None:
    """LoRA adapter + projector (``save_pretrained``) and the resolved config, atomically."""
    with atomic_dir(path) as tmp:
        student.save_pretrained(tmp, safe_serialization=True)
        meta = {"fold": fold, "epoch": epoch, "config": json.loads(cfg.to_json())}
        (tmp / "pldistill_config.json").write_text(json.dumps(meta, indent=2))


def _epoch_checkpoint(student) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="pldistill-ckpt-"))
    student.save_pretrained(tmp, safe_serialization=True)
    return tmp


def _evaluate_saved(student, head, path: Path, teacher, data: FoldData, batch_size: int) -> dict:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(student, load_file(str(path / "adapter_model.safetensors")))
    return _evaluate(head, teacher.audio_tower, data.test, teacher.tokenizer, data.labels, batch_size)
