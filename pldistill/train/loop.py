"""What the two student families' trial loops share: a run's result, an epoch's hand-back, the
learning-rate schedule, the rank helpers, the best-epoch choice and the predictions file.

The audio-LLM student (:mod:`pldistill.train.trial`) and EmoDistill's classifier student
(:mod:`pldistill.train.classifier_trial`) train differently but report, choose their best epoch and
write their predictions the same way; kept here so neither imports the other's internals.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from pldistill._fs import atomic_write
from pldistill.config import metric_mode
from pldistill.train.checkpoint import ResumeState
from pldistill.train.parallel import collective_device

__all__ = ["FoldResult", "Epoch", "Schedule", "Scored", "CheckpointWriter", "PREDICTIONS_FILE", "write_predictions",
           "lr_factor", "rank_world", "log", "all_ranks_finite", "agreed", "better", "prefixed"]

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


def write_predictions(folder: Path, scored: list[Scored], labels: tuple[str, ...]) -> None:
    """The best epoch's test predictions beside its student (``test_predictions.parquet``: key, label,
    pred, scores, lexical condition): what clip-level comparisons (paired bootstrap) and the exported
    model's check read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"key": [c[0] for c in scored], "label": [c[1] for c in scored],
                      "pred": [int(np.argmax(c[2])) for c in scored], "scores": [c[2] for c in scored],
                      "lexical": pa.array([c[3] for c in scored], pa.string())})
    table = table.replace_schema_metadata({"labels": json.dumps(list(labels))})
    atomic_write(folder / PREDICTIONS_FILE, lambda fh: pq.write_table(table, fh))


def all_ranks_finite(losses: dict[str, float]) -> bool:
    """Whether every rank's losses are finite: all ranks stop together, or the others hang in a collective."""
    finite = all(math.isfinite(v) for v in losses.values())
    if rank_world()[1] > 1:
        flag = torch.tensor([0.0 if finite else 1.0], device=collective_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        finite = flag.item() == 0.0
    return finite


def agreed(flag: bool) -> bool:
    """Rank 0's decision for all (the ranks' train losses differ, so ``val_loss`` selection could split)."""
    if rank_world()[1] == 1:
        return flag
    t = torch.tensor([float(flag)], device=collective_device())
    dist.broadcast(t, 0)
    return bool(t.item())


def better(row: dict[str, Any], best: dict[str, float], metric: str) -> bool:
    """Whether ``row`` beats ``best`` on ``metric`` (lower is better for a loss)."""
    return row[metric] < best[metric] if metric_mode(metric) == "min" else row[metric] > best[metric]


def prefixed(split: str, metrics: dict[str, float]) -> dict[str, float]:
    """``metrics`` named for their split (``val_ua``): how rows and results name them."""
    return {f"{split}_{k}": v for k, v in metrics.items()}
