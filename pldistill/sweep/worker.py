"""The Ray Train worker loop: one trial's training on one worker (rank) of its TorchTrainer.

Ray Train has already set up ``torch.distributed`` (gloo on CPU, nccl on GPU); :func:`run_trial`
wraps the student in DDP and shards the data. Every rank reports each epoch (Ray Train wants all
ranks to call ``report``); rank 0 attaches the epoch's checkpoint, and its metrics reach Tune
through ``TuneReportCallback``. Rank 0 also rewrites the trial's epochs Parquet after each epoch,
so a running sweep is queryable.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any

__all__ = ["worker_loop", "write_divergence", "DIVERGED_FILE"]


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


def worker_loop(loop_config: dict[str, Any]) -> None:
    import ray.train
    from ray.train import Checkpoint

    from pldistill.config import TrialConfig
    from pldistill.results import EpochRecord, ResultsStore
    from pldistill.sweep.metrics import TrialMetrics
    from pldistill.sweep.reaper import PG_KEY
    from pldistill.train.checkpoint import load_state
    from pldistill.train.trial import run_trial

    cfg = TrialConfig.model_validate(loop_config["trial"])
    sweep, trial_id = loop_config["sweep"], loop_config["trial_id"]
    _use_worker_gpu()
    store = ResultsStore(Path(loop_config["results"]), sweep)
    rank = ray.train.get_context().get_world_rank()
    nodes = json.dumps(_gather_nodes())
    pg = ray.util.get_current_placement_group()
    extra = {"nodes": nodes, **({PG_KEY: pg.id.hex()} if pg is not None else {})}
    # A restarted worker (its worker group died, or the sweep resumed) gets the trial's latest
    # checkpoint back from Ray Train and carries on after that epoch.
    ckpt_in = ray.train.get_checkpoint()
    resume = Path(ckpt_in.to_directory()) if ckpt_in is not None else None
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
        ckpt = Checkpoint.from_directory(str(ckpt_dir)) if ckpt_dir is not None else None
        ray.train.report({**metrics, **extra}, checkpoint=ckpt)

    try:
        run_trial(cfg, report=report, resume=resume)
    except FloatingPointError as exc:
        # Diverged: restarting would diverge again. Every rank gets here together (the finiteness
        # check is collective); the driver turns the marker into the trial's failure.
        if rank == 0:
            write_divergence(cfg.output_dir, str(exc))
    finally:
        if resume is not None:  # the local copy Ray Train made of the checkpoint
            shutil.rmtree(resume, ignore_errors=True)


def _use_worker_gpu() -> None:
    """Make this worker's GPU (Ray Train assigns one per worker) the current device: the trial
    computes there, and nccl collectives use it. No-op on CPU workers."""
    import torch

    if torch.cuda.is_available():
        import ray.train.torch

        torch.cuda.set_device(ray.train.torch.get_device())


DIVERGED_FILE = "diverged.txt"


def write_divergence(output_dir: Path, reason: str) -> None:
    """Record why a trial diverged, atomically, in its output folder."""
    from pldistill._fs import atomic_write

    atomic_write(output_dir / DIVERGED_FILE, reason)
