"""A trial's resumable state: what a restarted worker needs to carry on exactly where it stopped.

One checkpoint folder per epoch, written after the epoch's evaluation::

    adapter_model.safetensors, adapter_config.json   the student (LoRA + projector, ``save_pretrained``)
    optimizer.pt                                     optimizer state and torch's RNG state (tensors only)
    best_trainable.safetensors                       the best epoch's trainable weights so far
    trainer_state.json                               fold, epoch, step, numpy RNG, best-so-far, epoch rows
    trainable.safetensors                            sharded (fsdp) trials only: the full trainable weights

A sharded trial's rank 0 writes full (gathered) tensors: the trainable weights keyed by the
:class:`~pldistill.models.audiolm.AudioLMHead`'s parameter names and the optimizer state as
``torch.distributed.checkpoint``'s full state dict (keyed by those names too), so the restarted
ranks re-shard them with ``set_model_state_dict`` / ``set_optimizer_state_dict``, on any node.

Nothing here is unpickled: ``optimizer.pt`` is read with ``torch.load(weights_only=True)``.
Ray Train keeps the latest checkpoint of each trial and hands it back to the workers it restarts
(after a worker or node died, or when an interrupted sweep resumes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["ResumeState", "FullState", "save_state", "load_state", "restore_training", "checkpoint_complete",
           "STATE_FILE"]

STATE_FILE = "trainer_state.json"
_OPTIM_FILE = "optimizer.pt"
_BEST_FILE = "best_trainable.safetensors"
_TRAINABLE_FILE = "trainable.safetensors"
_FORMAT = 2  # 2: runs are (seed, fold) pairs


@dataclass
class ResumeState:
    """Where a trial stood after an epoch. ``current``/``done`` are ``FoldResult`` dicts."""

    run_index: int  # index into the trial's (seed, fold) runs of the run this epoch belonged to
    epoch: int  # epochs completed in that fold
    step: int  # optimizer steps taken in that fold
    numpy_rng: dict[str, Any]
    current: dict[str, Any]
    done: list[dict[str, Any]] = field(default_factory=list)
    clock: dict[str, float] = field(default_factory=dict)
    attempt: int = 0  # 0 for the first run of the trial, +1 per restart
    metrics: dict[str, Any] = field(default_factory=dict)  # the report made after this epoch
    path: Path | None = None  # the checkpoint folder (adapter weights live there)

    def epoch_rows(self) -> list[dict[str, Any]]:
        """Every epoch row reported up to this checkpoint, finished folds first."""
        return [row for f in [*self.done, self.current] for row in f.get("epochs", [])]


@dataclass
class FullState:
    """A sharded student's trainable weights and optimizer state gathered in full (rank 0's copy).

    ``trainable``: keyed by the head's parameter names; ``optimizer``: the full optimizer state dict
    of ``torch.distributed.checkpoint.state_dict.get_optimizer_state_dict``."""

    trainable: dict[str, torch.Tensor]
    optimizer: dict[str, Any]


def save_state(path: Path, student: Any, optimizer: torch.optim.Optimizer, state: ResumeState,
               best: dict[str, torch.Tensor] | None = None, full: FullState | None = None) -> None:
    """Write ``state`` with the student's adapter and the optimizer into the folder ``path``;
    ``best``: the best epoch's trainable weights so far (what the fold's final test will use), full
    tensors; ``full``: the gathered weights and optimizer of a sharded student (its own are shards)."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    if full is None:
        student.save_pretrained(path, safe_serialization=True)
    else:
        student.save_pretrained(path, safe_serialization=True,
                                state_dict={f"base_model.{k}": v for k, v in full.trainable.items()})
        save_file({k: v.detach().cpu().contiguous() for k, v in full.trainable.items()}, str(path / _TRAINABLE_FILE))
    if best:
        save_file({k: v.detach().cpu().contiguous() for k, v in best.items()}, str(path / _BEST_FILE))
    rng = {"torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():  # dropout on a GPU draws from its own generator
        rng["cuda_rng"] = torch.cuda.get_rng_state()
    torch.save({"optimizer": optimizer.state_dict() if full is None else full.optimizer, "sharded": full is not None,
                **rng}, path / _OPTIM_FILE)
    body = {k: v for k, v in vars(state).items() if k != "path"}
    # written last, naming what was written before it: a folder missing one of them is incomplete
    # (a half-deleted old checkpoint, :func:`checkpoint_complete`)
    files = sorted(p.name for p in path.iterdir() if p.is_file() and p.name != STATE_FILE)
    (path / STATE_FILE).write_text(json.dumps({"format": _FORMAT, "files": files, **body}, default=_jsonable))


def checkpoint_complete(path: Path) -> bool:
    """Whether ``path`` holds a whole checkpoint: its state and every file the state names (the
    optimizer, for one written before states named their files). False for one partly deleted."""
    try:
        body = json.loads((Path(path) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return False
    names = body.get("files", [_OPTIM_FILE]) if isinstance(body, dict) else None
    return isinstance(names, list) and all((Path(path) / str(n)).is_file() for n in names)


def load_state(path: Path) -> ResumeState | None:
    """The state saved in ``path``, or None if it holds no trainer state (not a pldistill checkpoint)."""
    path = Path(path)
    if not (path / STATE_FILE).is_file():
        return None
    body = json.loads((path / STATE_FILE).read_text())
    if body.pop("format", None) != _FORMAT:  # written by an older pldistill: start the trial afresh
        return None
    body.pop("files", None)
    return ResumeState(**body, path=path)


def restore_training(state: ResumeState, student: Any, optimizer: torch.optim.Optimizer,
                     head: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Load the adapter, optimizer and torch RNG saved with ``state`` into live objects; returns the
    best epoch's trainable weights saved with it (full tensors; empty if none were). A ``student``
    with a ``load_checkpoint(folder)`` method (the classifier family's, whose ``save_pretrained`` wrote
    it) reads its own weights instead of a peft adapter.

    ``head``: the student's (FSDP-sharded) :class:`AudioLMHead`, for a checkpoint of a sharded trial:
    every rank reads the full tensors and keeps its own shards. A collective then; all ranks call it."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from pldistill.train.parallel import is_sharded

    assert state.path is not None
    # on the CPU: the optimizer moves its state to each parameter's device (maybe another GPU index)
    saved = torch.load(state.path / _OPTIM_FILE, weights_only=True, map_location="cpu")
    if saved.get("sharded", False):
        if head is None or not is_sharded(head):
            raise ValueError(f"checkpoint {state.path} was written by a sharded trial (parallelism: fsdp); "
                             f"it resumes only under fsdp")
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(head, load_file(str(state.path / _TRAINABLE_FILE)), options=opts)
        set_optimizer_state_dict(head, optimizer, saved["optimizer"], options=opts)
    else:
        if hasattr(student, "load_checkpoint"):  # a student that is no peft model (the classifier family)
            student.load_checkpoint(state.path)
        else:
            set_peft_model_state_dict(student, load_file(str(state.path / "adapter_model.safetensors")))
        optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["torch_rng"])
    if "cuda_rng" in saved and torch.cuda.is_available():
        torch.cuda.set_rng_state(saved["cuda_rng"])
    best = state.path / _BEST_FILE
    return load_file(str(best)) if best.is_file() else {}


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)
