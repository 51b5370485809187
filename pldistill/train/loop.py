"""The epoch loop both student families share, and the pieces of it they both use.

A trial trains one student per (seed, fold) run. The audio-LLM student (:mod:`pldistill.train.trial`)
and EmoDistill's classifier student (:mod:`pldistill.train.classifier_trial`) build their runs
differently and take different steps, but an epoch has the same shape for both, and so does what
it hands back: :func:`run_epochs` trains an epoch, stops every rank on a non-finite loss, evaluates,
writes the epoch's row, keeps the best epoch, and yields an :class:`Epoch` whose checkpoint writer
lets the trial resume after it. Each family gives its own pieces as :class:`EpochSteps`.

Kept here rather than in either family's module so neither imports the other's internals, and so
the two cannot drift apart in what a row holds, how the best epoch is chosen or when the test runs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist

from pldistill._fs import atomic_write
from pldistill.config import TrialConfig, metric_mode
from pldistill.models.inputs import Example
from pldistill.train.checkpoint import ResumeState
from pldistill.train.dataset import FoldData
from pldistill.train.parallel import collective_device

__all__ = ["FoldResult", "Epoch", "EpochSteps", "Schedule", "Scored", "CheckpointWriter", "PREDICTIONS_FILE",
           "run_epochs", "is_new_best", "write_predictions", "lr_factor", "rank_world", "log"]

#: The best epoch's test predictions of a run, beside its saved student (``<run>/best/``).
PREDICTIONS_FILE = "test_predictions.parquet"
#: One scored clip: key, label index, every label's score, lexical condition (None: not marked).
Scored = tuple[str, int, list[float], "str | None"]
#: Writes an epoch's resumable checkpoint (see :mod:`pldistill.train.checkpoint`) into a folder.
CheckpointWriter = Callable[[Path, ResumeState], None]


@dataclass
class FoldResult:
    """One run of a trial: one fold trained with one seed."""

    fold: int
    best_epoch: int
    best: dict[str, float]  # val_/test_ ua, wa, f1 and loss_<term> at the best epoch
    teacher: dict[str, float]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    student_dir: str | None = None
    seed: int = 0
    #: :func:`predictions_hash` of the best epoch's test predictions: two runs that agree to the bit agree here
    predictions_sha256: str | None = None


@dataclass
class Epoch:
    """What one finished epoch hands to the trial: its row, where training stands (optimizer
    step, numpy RNG), and a function that writes the resumable checkpoint into a folder."""

    row: dict[str, Any]
    last: bool
    step: int
    numpy_rng: dict[str, Any]
    save: CheckpointWriter


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0.1 (nanoGPT's ``get_lr`` shape)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Schedule:
    """Steps of a run. Every rank takes the same number of steps (DDP needs it), so the remainder
    of the train split that does not divide by the world size is dropped."""

    per_rank: int  # training clips per rank per epoch
    micro_per_epoch: int  # micro-batches per epoch
    total_steps: int  # optimizer steps over all epochs
    warmup: int
    base_lrs: tuple[float, ...]

    def set_lr(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        for g, base in zip(optimizer.param_groups, self.base_lrs):
            g["lr"] = base * lr_factor(step, self.total_steps, self.warmup)


class RunState(Protocol):
    """What :func:`run_epochs` reads of a family's run (its ``_Fold`` or ``_Run``)."""

    data: FoldData
    schedule: Schedule
    optimizer: torch.optim.Optimizer
    rng: np.random.Generator  # the data order; its state goes into the checkpoint
    out_dir: Path
    step: int
    first_epoch: int


@dataclass(frozen=True)
class EpochSteps:
    """A family's pieces of an epoch, each bound to its run; :func:`run_epochs` calls them in order."""

    #: one epoch of gradient steps -> the mean of each loss term over its micro-batches
    train_epoch: Callable[[], dict[str, float]]
    #: clips -> closed-set figures and every clip's scores (the same on every rank)
    evaluate: Callable[[list[Example]], tuple[dict[str, float], list[Scored]]]
    #: ``(row, losses, test predictions or None)``: make the epoch the best when it is; returns
    #: what ``checkpoint`` needs of it (the sharded audio-LLM student's gathered weights; else None)
    keep_if_best: Callable[[dict[str, Any], dict[str, float], list[Scored] | None], Any]
    #: load the best epoch's weights back into the student (before the final test)
    restore_best: Callable[[], None]
    #: what ``keep_if_best`` returned -> the epoch's checkpoint writer (called on every rank: it may gather)
    checkpoint: Callable[[Any], CheckpointWriter]


def rank_world() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` when ``torch.distributed`` is not set up (tests, one worker)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def log(msg: str) -> None:
    """A progress line, from rank 0 only (every rank runs the same loop)."""
    rank, _ = rank_world()
    if rank == 0:
        print(f"[pldistill] {msg}", flush=True)


def run_epochs(run: RunState, steps: EpochSteps, cfg: TrialConfig, seed: int, fold: int, res: FoldResult,
               clock: dict[str, float], attempt: int = 0) -> Iterator[Epoch]:
    """Train ``run`` from its first epoch on, yielding after each epoch with ``res`` (best epoch,
    figures) brought up to date and ``clock`` (clips seen, training seconds) advanced."""
    tc = cfg.train
    rank, world = rank_world()
    for epoch in range(run.first_epoch, tc.epochs):
        # train
        t0 = time.perf_counter()
        losses = steps.train_epoch()
        train_s = time.perf_counter() - t0
        seen = world * min(run.schedule.per_rank, run.schedule.micro_per_epoch * tc.batch_size)
        clock["train_s"] += train_s
        clock["seen"] += seen
        if not _all_ranks_finite(losses):  # every rank stops together, or the others hang in a collective
            raise FloatingPointError(f"non-finite loss in seed {seed} fold {fold} epoch {epoch + 1}: {losses}")
        # evaluate
        val, _ = steps.evaluate(run.data.val)
        row: dict[str, Any] = {"seed": seed, "fold": fold, "epoch": epoch + 1,
                               **{f"train_loss_{k}": v for k, v in losses.items()}, **_prefixed("val", val),
                               "samples_per_s": seen / train_s, "lr": run.optimizer.param_groups[0]["lr"],
                               "wall_s": train_s, "attempt": attempt}
        predictions = None
        if tc.eval_test_each_epoch:
            test, predictions = steps.evaluate(run.data.test)
            row.update(_prefixed("test", test))
        res.epochs.append(row)
        # keep the best epoch
        kept = steps.keep_if_best(row, losses, predictions)
        last = epoch + 1 == tc.epochs
        if last and not tc.eval_test_each_epoch:  # test once, with the best epoch's student
            steps.restore_best()
            test, predictions = steps.evaluate(run.data.test)
            res.best.update(_prefixed("test", test))
            if rank == 0:
                res.predictions_sha256 = write_predictions(run.out_dir / "best", predictions, run.data.labels)
        log(f"seed {seed} fold {fold} epoch {epoch + 1}/{tc.epochs}: loss {losses['total']:.4f} "
            f"val UA {row['val_ua']:.3f}" + (f" test UA {row['test_ua']:.3f}" if "test_ua" in row else ""))
        save = steps.checkpoint(kept)
        yield Epoch(row=row, last=last, step=run.step, numpy_rng=run.rng.bit_generator.state, save=save)


def is_new_best(res: FoldResult, row: dict[str, Any], losses: dict[str, float], select_metric: str) -> bool:
    """Whether this epoch is the run's best so far (rank 0 decides for all); when it is, ``res`` takes
    its figures. Saving the weights and the student is the family's part."""
    if not _agreed(res.best_epoch < 0 or _better(row, res.best, select_metric)):
        return False
    res.best_epoch = row["epoch"]
    res.best = {k: v for k, v in row.items() if k.startswith(("val_", "test_"))}
    res.best.update({f"loss_{k}": v for k, v in losses.items()})
    return True


def predictions_hash(scored: list[Scored]) -> str:
    """SHA-256 (16 hex digits) of test predictions: each clip's key, prediction and exact scores
    (``float.hex``), in order. Equal only when the run's outputs are equal to the last bit."""
    import hashlib

    blob = json.dumps([[c[0], int(np.argmax(c[2])), [float(x).hex() for x in c[2]]] for c in scored])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_predictions(folder: Path, scored: list[Scored], labels: tuple[str, ...]) -> str:
    """The best epoch's test predictions beside its student (``test_predictions.parquet``: key, label,
    pred, scores, lexical condition): what clip-level comparisons (paired bootstrap) and the exported
    model's check read. Returns their :func:`predictions_hash`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"key": [c[0] for c in scored], "label": [c[1] for c in scored],
                      "pred": [int(np.argmax(c[2])) for c in scored], "scores": [c[2] for c in scored],
                      "lexical": pa.array([c[3] for c in scored], pa.string())})
    table = table.replace_schema_metadata({"labels": json.dumps(list(labels))})
    atomic_write(folder / PREDICTIONS_FILE, lambda fh: pq.write_table(table, fh))
    return predictions_hash(scored)


def _all_ranks_finite(losses: dict[str, float]) -> bool:
    finite = all(math.isfinite(v) for v in losses.values())
    if rank_world()[1] > 1:
        flag = torch.tensor([0.0 if finite else 1.0], device=collective_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        finite = flag.item() == 0.0
    return finite


def _agreed(flag: bool) -> bool:
    """Rank 0's decision for all (the ranks' train losses differ, so ``val_loss`` selection could split)."""
    if rank_world()[1] == 1:
        return flag
    t = torch.tensor([float(flag)], device=collective_device())
    dist.broadcast(t, 0)
    return bool(t.item())


def _better(row: dict[str, Any], best: dict[str, float], metric: str) -> bool:
    return row[metric] < best[metric] if metric_mode(metric) == "min" else row[metric] > best[metric]


def _prefixed(split: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{split}_{k}": v for k, v in metrics.items()}
