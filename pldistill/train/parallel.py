"""Data parallelism of one trial's workers: DDP (student replicated) or FSDP2 (teacher and student sharded).

``wrap_models`` is called once per fold, after the models are built and before the optimizer (FSDP
replaces parameters by sharded ``DTensor`` s, and the optimizer must hold those). Under ``fsdp``:

* every decoder layer of the teacher's and the student's language model is its own FSDP unit, and
  each :class:`~pldistill.models.audiolm.AudioLMHead` is a root holding the rest (embeddings,
  projector, norm, ``lm_head``; the student's tied embedding and ``lm_head`` stay in one unit);
* the audio encoder is shared by teacher and student and is called on its own (``encode_audio``), so it
  cannot belong to either root; it stays replicated (``ignored_params``; frozen, 0.64B parameters at the
  real size, against 7.7B of teacher LLM that are sharded);
* the teacher root reshards after its forward (it has no backward that would free it).

The loop then uses :func:`gradient_sync` (DDP ``no_sync`` / FSDP ``set_requires_gradient_sync``),
:func:`clip_grad_norm` (sharded gradients: the norm is all-reduced before clipping) and
:func:`full_trainable_state` (a collective: every rank calls it, rank 0 gets the full tensors).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["ParallelMode", "compute_device", "collective_device", "wrap_models", "gradient_sync",
           "clip_grad_norm", "full_trainable_state", "snapshot_trainable", "restore_trainable", "shard_like",
           "full_optimizer_state", "reshard", "is_sharded"]

ParallelMode = Literal["ddp", "fsdp"]


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def compute_device() -> torch.device:
    """Where this process computes: its current GPU when it has one (a Ray Train worker gets its own
    GPU, set current by the sweep's worker loop), else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def collective_device() -> torch.device:
    """Where small tensors for collectives must live: the GPU under nccl, the CPU under gloo."""
    if _world() > 1 and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def is_sharded(module: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def wrap_models(teacher_head: nn.Module | None, student_head: nn.Module, mode: ParallelMode, *,
                audio_tower: nn.Module | None = None, device: torch.device | str | None = None,
                ) -> tuple[nn.Module | None, nn.Module]:
    """``(teacher, student)`` to call in a step, on ``device`` (default: where the student is).

    Single process: both moved, unwrapped. ``ddp``: the student in DDP, the teacher as is (frozen,
    replicated). ``fsdp``: both sharded in place (the returned modules are the same objects), each
    rank moving only its shards to ``device`` (a 7B teacher never sits whole on one GPU);
    ``audio_tower``'s parameters are left out of both (replicated, moved whole)."""
    if mode not in ("ddp", "fsdp"):
        raise ValueError(f"unknown parallelism {mode!r}; valid: ddp, fsdp")
    device = torch.device(device) if device is not None else next(student_head.parameters()).device
    world = _world()
    if audio_tower is not None:
        audio_tower.to(device)
    if world == 1 or mode == "ddp":
        student_head.to(device)
        if teacher_head is not None:
            teacher_head.to(device)
        if world == 1:
            return teacher_head, student_head
        ids = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == "cuda" else None
        return teacher_head, nn.parallel.DistributedDataParallel(student_head, device_ids=ids)
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(device.type, (world,))  # fully_shard moves what it manages to the mesh's device
    ignored = set(audio_tower.parameters()) if audio_tower is not None else set()
    if teacher_head is not None:
        _shard_head(teacher_head, mesh, ignored, reshard_root=True)
    _shard_head(student_head, mesh, ignored, reshard_root=None)
    return teacher_head, student_head


def _shard_head(head: nn.Module, mesh, ignored: set[nn.Parameter], reshard_root: bool | None) -> None:
    """Bottom-up: each decoder layer, then the head itself (whatever its layers did not take)."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    for layer in head.core.language_model.layers:
        fully_shard(layer, mesh=mesh)
    # None: FSDP's default for a root (kept gathered between forward and backward).
    fully_shard(head, mesh=mesh, ignored_params=ignored, reshard_after_forward=reshard_root)
    if hasattr(head, "score_responses"):  # closed-set evaluation: a second entry point that must gather too
        register_fsdp_forward_method(head, "score_responses")


@contextmanager
def gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Reduce gradients across ranks in this backward only if ``enabled`` (gradient accumulation)."""
    if isinstance(model, nn.parallel.DistributedDataParallel) and not enabled:
        with model.no_sync():
            yield
        return
    if is_sharded(model):
        model.set_requires_gradient_sync(enabled)  # type: ignore[operator]
    yield


def clip_grad_norm(params: Iterable[nn.Parameter], max_norm: float) -> Tensor:
    """``clip_grad_norm_`` that also works for FSDP's sharded (``DTensor``) gradients: the total norm
    of the local shards is all-reduced into the norm of the full gradient before the clip factor."""
    from torch.distributed.tensor import DTensor

    params = [p for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm([p.grad for p in params], 2.0)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total


def full_trainable_state(head: nn.Module) -> dict[str, Tensor] | None:
    """Full (unsharded) CPU copies of the trainable parameters, keyed by ``head``'s parameter names.

    A collective under FSDP: every rank must call it, in the same order; rank 0 gets the dict, the
    others None. Unsharded models: every rank gets it (no communication)."""
    from torch.distributed.tensor import DTensor

    rank = dist.get_rank() if _world() > 1 else 0
    out: dict[str, Tensor] = {}
    for name, p in head.named_parameters():
        if not p.requires_grad:
            continue
        full = p.full_tensor() if isinstance(p, DTensor) else p
        if rank == 0 or not isinstance(p, DTensor):
            out[name] = full.detach().to("cpu", copy=True)
    return out if rank == 0 or not is_sharded(head) else None


def snapshot_trainable(head: nn.Module) -> dict[str, Tensor]:
    """This rank's copies of the trainable parameters (its shards under FSDP); no communication."""
    return {name: p.detach().clone() for name, p in head.named_parameters() if p.requires_grad}


def restore_trainable(head: nn.Module, snapshot: dict[str, Tensor]) -> None:
    """Put a :func:`snapshot_trainable` back (the sharded parameters are re-gathered on the next forward)."""
    reshard(head)
    with torch.no_grad():
        for name, p in head.named_parameters():
            if name in snapshot:
                p.copy_(snapshot[name])


def shard_like(head: nn.Module, full: dict[str, Tensor]) -> dict[str, Tensor]:
    """Full tensors keyed by ``head``'s parameter names, cut like its parameters: this rank's shards
    of the sharded ones (no communication: every rank holds the full tensors), the others as is."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    params = dict(head.named_parameters())
    out: dict[str, Tensor] = {}
    for name, t in full.items():
        p = params[name]
        t = t.to(device=p.device, dtype=p.dtype)
        out[name] = distribute_tensor(t, p.device_mesh, p.placements, src_data_rank=None) \
            if isinstance(p, DTensor) else t
    return out


def full_optimizer_state(head: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The sharded optimizer's state gathered in full on rank 0 (CPU; empty on the other ranks),
    keyed by ``head``'s parameter names. A collective: every rank calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(head, optimizer,
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def reshard(module: nn.Module) -> None:
    """Free an FSDP root's gathered parameters (a root stays gathered after a forward without backward,
    e.g. evaluation); no-op otherwise."""
    if is_sharded(module):
        module.reshard()  # type: ignore[operator]
