"""A trial's training loop, run where its scaling puts it.

Two entry points share one loop (:func:`_run_loop`):

- :func:`worker_loop` is one rank of a Ray Train ``TorchTrainer`` (a trial of several workers).
  Ray Train has already set up ``torch.distributed`` (gloo on CPU, nccl on GPU); :func:`run_trial`
  wraps the student in DDP and shards the data. Every rank reports each epoch (Ray Train wants all
  ranks to call ``report``); rank 0 attaches the epoch's checkpoint, and its metrics reach Tune
  through ``TuneReportCallback``.
- :func:`trial_loop` runs a one-worker trial inside the Tune trial's own process: no worker group,
  no collective, so nothing Ray Train adds is needed, and its ~10 s of controller and worker-group
  start per trial goes away (bench/RESULTS.md, "Smoke sweep efficiency"). It reports to Tune
  directly (``ray.tune.report``); Tune keeps the epoch checkpoints and hands the latest back when
  the trial restarts (its process died) or the sweep resumes.

Either way rank 0 rewrites the trial's epochs Parquet after each epoch, so a running sweep is
queryable, and a restarted trial carries on after its last checkpointed epoch.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["worker_loop", "trial_loop", "write_divergence", "DIVERGED_FILE"]


def _node_label() -> str:
    try:
        import ray

        return f"{socket.gethostname()}:{ray.get_runtime_context().get_node_id()[:12]}"
    except Exception:  # outside Ray
        return socket.gethostname()


def _gather_nodes() -> list[str]:
    import torch.distributed as dist

    me = _node_label()
    if not (dist.is_available() and dist.is_initialized()):
        return [me]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, me)
    return [str(x) for x in out]


@dataclass
class _Session:
    """What the loop needs from whoever runs it (Ray Train or Tune)."""

    rank: int
    #: The trial's latest checkpoint when it restarts (a local copy, removed when the loop ends), else None.
    resume: Path | None
    #: ``report(metrics, checkpoint_dir_or_None)``: hand the epoch's metrics (and checkpoint) on.
    report: Callable[[dict[str, Any], Path | None], None]
    #: Added to every report: the trial's node labels and, under Ray Train, its placement group.
    extra: dict[str, str]


def worker_loop(loop_config: dict[str, Any]) -> None:
    """Ray Train's ``train_loop_per_worker``: one rank of a multi-worker trial."""
    import ray.train
    from ray.train import Checkpoint

    from pldistill.sweep.reaper import PG_KEY

    _use_worker_gpu()
    nodes = json.dumps(_gather_nodes())
    pg = ray.util.get_current_placement_group()
    # A restarted worker (its worker group died, or the sweep resumed) gets the trial's latest
    # checkpoint back from Ray Train and carries on after that epoch.
    ckpt_in = ray.train.get_checkpoint()

    def report(metrics: dict[str, Any], ckpt_dir: Path | None) -> None:
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(str(ckpt_dir)) if ckpt_dir else None)

    _run_loop(loop_config, _Session(
        rank=ray.train.get_context().get_world_rank(),
        resume=Path(ckpt_in.to_directory()) if ckpt_in is not None else None, report=report,
        extra={"nodes": nodes, **({PG_KEY: pg.id.hex()} if pg is not None else {})}))


def trial_loop(loop_config: dict[str, Any]) -> None:
    """A one-worker trial in the calling Tune trial's process (see the module docstring), which
    keeps the fold's data and frozen encoder for the next trial it runs (:mod:`pldistill.train.reuse`).

    No placement group is reported: the trial's resources are Tune's own, which Tune frees itself
    (the reaper must not remove a group Tune may hand to the next trial)."""
    from ray import tune

    from pldistill.train import reuse

    reuse.enable()  # Tune reuses this process for the sweep's next trial: keep its fold and encoder
    ckpt_in = tune.get_checkpoint()

    def report(metrics: dict[str, Any], ckpt_dir: Path | None) -> None:
        # Tune copies the folder into the trial's storage before report returns; the caller removes it.
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(ckpt_dir)) if ckpt_dir else None)

    _run_loop(loop_config, _Session(rank=0, resume=Path(ckpt_in.to_directory()) if ckpt_in is not None else None,
                                    report=report, extra={"nodes": json.dumps([_node_label()])}))


def _run_loop(loop_config: dict[str, Any], session: _Session) -> None:
    from pldistill.config import TrialConfig
    from pldistill.results import EpochRecord, ResultsStore
    from pldistill.sweep.metrics import TrialMetrics
    from pldistill.train.checkpoint import load_state
    from pldistill.train.trial import run_trial

    cfg = TrialConfig.model_validate(loop_config["trial"])
    sweep, trial_id, rank, resume = loop_config["sweep"], loop_config["trial_id"], session.rank, session.resume
    store = ResultsStore(Path(loop_config["results"]), sweep)
    state = load_state(resume) if resume is not None else None
    # Epoch rows by (seed, fold, epoch): a re-run epoch replaces the row an earlier attempt wrote.
    rows: dict[tuple[int, int, int], EpochRecord] = {
        (r.get("seed", 0), r["fold"], r["epoch"]): EpochRecord.from_metrics(sweep, trial_id, r) for r in
        (state.epoch_rows() if state is not None else [])}
    live = TrialMetrics(sweep, trial_id)  # Prometheus series (ray.util.metrics), rank 0 only

    def report(metrics: dict[str, Any], row: dict[str, Any], ckpt_dir: Path | None) -> None:
        if rank == 0:
            rows[(row["seed"], row["fold"], row["epoch"])] = EpochRecord.from_metrics(sweep, trial_id, row)
            store.write_epochs(trial_id, list(rows.values()))
            live.publish(row)
        session.report({**metrics, **session.extra}, ckpt_dir)

    try:
        run_trial(cfg, report=report, resume=resume)
    except FloatingPointError as exc:
        # Diverged: restarting would diverge again. Every rank gets here together (the finiteness
        # check is collective); the driver turns the marker into the trial's failure.
        if rank == 0:
            write_divergence(cfg.output_dir, str(exc))
    finally:
        if resume is not None:  # the local copy Ray made of the checkpoint
            shutil.rmtree(resume, ignore_errors=True)


def _use_worker_gpu() -> None:
    """Make this worker's GPU (Ray Train assigns one per worker) the current device: the trial
    computes there, and nccl collectives use it. No-op on CPU workers. (A one-worker trial in the
    Tune process needs nothing: Ray makes its one GPU the only visible one, so it is device 0.)"""
    import torch

    if torch.cuda.is_available():
        import ray.train.torch

        torch.cuda.set_device(ray.train.torch.get_device())


DIVERGED_FILE = "diverged.txt"


def write_divergence(output_dir: Path, reason: str) -> None:
    """Record why a trial diverged, atomically, in its output folder."""
    from pldistill._fs import atomic_write

    atomic_write(output_dir / DIVERGED_FILE, reason)
