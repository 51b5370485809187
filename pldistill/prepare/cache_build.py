"""Build a sweep's teacher cache with Ray Data: encoder and teacher run once per clip, for every trial.

For each fold (and pseudo target) the sweep needs, the clips' keys go through ``map_batches`` on a pool of
actors; each actor loads the fold's features and the (already fine-tuned) teacher once, by path,
and turns a batch of keys into Arrow rows (:func:`pldistill.train.teacher_cache.cache_rows`:
the teacher runs on the fold's training clips only; val and test clips get their encoder output).
Actors hold one GPU each when the sweep's workers use GPUs. The driver streams the results into
the cache's temporary folder, with progress (``pldistill.progress``); ``ensure_teacher_cache`` checks
that every clip is there exactly once, writes the ``lm_head`` and ``meta.json`` and renames the
folder into place. Rows arrive in any order: they carry their sample id (the clip key).

Ray is started only when a cache is missing: by ``start_ray`` when the caller passes one (``launch``
passes its own start, so a launch starts Ray once, for the cache build and the sweep alike), else a
private ``address="local"`` instance (or ``address``) that is shut down again when the build ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pldistill.config import TrialConfig

__all__ = ["CacheBuildOptions", "build_fold_cache", "stop_own_ray", "ensure_ray", "absolute_paths"]


@dataclass
class CacheBuildOptions:
    """How the Ray Data build runs (defaults suit a laptop; ``actors=None``: one per GPU, else 1)."""

    address: str | None = None
    num_cpus: int | None = None
    actors: int | None = None
    gpus_per_actor: float = 0.0
    batch_size: int = 16
    #: Progress as a rich bar (True), plain log lines (False) or by whether stdout is a terminal (None).
    tty: bool | None = None
    #: Starts (or attaches to) Ray when a build needs it and Ray is not up; the caller owns that Ray
    #: and shuts it down. None: this module starts its own and shuts it down after the build.
    start_ray: Callable[[], object] | None = None
    _started: list[bool] = field(default_factory=list, repr=False)


def build_fold_cache(cfg: TrialConfig, data: Any, *, log: Callable[[str], None] = print,
                     opts: CacheBuildOptions | None = None) -> Path:
    """One fold's cache (its teacher already prepared: :mod:`pldistill.prepare.artifacts`), its rows
    built with Ray Data when missing; the folder either way."""
    from pldistill.train.teacher_cache import (
        ensure_teacher_cache,
        fold_examples,
        teacher_cache_complete,
        teacher_cache_dir,
    )

    opts = opts or CacheBuildOptions()
    if teacher_cache_complete(cfg, data):  # built already: no teacher to load (a 7B LLM at real size)
        return teacher_cache_dir(cfg, data)
    cfg = absolute_paths(cfg)  # actors may run in another working directory
    teacher = _load_teacher(cfg, data, log)

    def write_rows(rows_dir: Path) -> None:
        from pldistill.train.pseudo_target import fold_pseudo_targets

        fold_pseudo_targets(cfg, data)  # metadata: the eGeMAPS computed (and cached) once, not by every actor
        ensure_ray(opts)
        _write_with_ray_data(cfg, data.fold, [ex.key for ex in fold_examples(data)], rows_dir, opts, log)

    return ensure_teacher_cache(cfg, data, teacher, log=log, write_rows=write_rows, batch_size=opts.batch_size)


def stop_own_ray(opts: CacheBuildOptions) -> None:
    """Shut down the Ray a build started for itself (none when the caller passed ``start_ray``)."""
    if opts._started:
        import ray

        ray.shutdown()
        opts._started.clear()


def _load_teacher(cfg: TrialConfig, data: Any, log: Callable[[str], None]) -> Any:
    """The fold's frozen teacher: fine-tuned once (cached) and loaded by path, or a real checkpoint
    loaded as is, without the scoring pass ``ensure_teacher`` adds for those (unless the fold has
    unlabelled clips: that pass also writes the teacher's answers the cache rows are forced on)."""
    import torch

    from pldistill.models.loading import freeze, load_teacher, set_encoder_window
    from pldistill.train.teacher import ensure_teacher

    if cfg.model.finetunes_teacher or data.unlabelled:
        return ensure_teacher(cfg, data, log=log)[0]
    teacher = load_teacher(cfg.model.teacher, dtype=getattr(torch, cfg.model.dtype))
    set_encoder_window(teacher.audio_tower, data.window_s)
    freeze(teacher.model)
    return teacher


def absolute_paths(cfg: TrialConfig) -> TrialConfig:
    """Actors may run in another working directory: give them absolute cache and data paths."""
    out = cfg.model_copy(deep=True)
    out.cache_dir = out.cache_dir.resolve()
    if out.data.manifests is not None:
        out.data.manifests = out.data.manifests.resolve()
    if out.data.audio_root is not None:
        out.data.audio_root = out.data.audio_root.resolve()
    return out


def ensure_ray(opts: CacheBuildOptions) -> None:
    import ray

    if ray.is_initialized():
        return
    if opts.start_ray is not None:  # the caller's Ray: it stays up for what the caller runs next
        opts.start_ray()
        return
    if opts.address:
        ray.init(address=opts.address, log_to_driver=False, configure_logging=False)
    else:  # a private instance: never join another cluster on this machine by accident
        ray.init(address="local", num_cpus=opts.num_cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    opts._started.append(True)


def _write_with_ray_data(cfg: TrialConfig, fold: int, keys: list[str], rows_dir: Path, opts: CacheBuildOptions,
                         log: Callable[[str], None]) -> None:
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    actors = opts.actors or (max(1, int(ray.cluster_resources().get("GPU", 0) // opts.gpus_per_actor))
                             if opts.gpus_per_actor > 0 else 1)
    ds = ray.data.from_items([{"key": k} for k in keys]).map_batches(
        _TeacherRowsActor, fn_constructor_kwargs={"cfg_json": cfg.to_json(), "fold": fold},
        batch_size=opts.batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=opts.gpus_per_actor or None, num_cpus=1,
    )
    from pldistill.progress import StepProgress
    from pldistill.train.teacher_cache import write_rows

    with StepProgress(len(keys), f"teacher cache fold {fold}", unit="clips", log=log, tty=opts.tty) as bar:
        for part, table in enumerate(_tables(ds)):
            write_rows(table, rows_dir / f"part-{part:05d}.arrow")
            bar.advance(table.num_rows)


def _tables(ds: Any) -> Iterator[Any]:
    for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        if table.num_rows:
            yield table


class _TeacherRowsActor:
    """Ray Data actor: loads the fold's features and teacher once; keys in, cache rows out."""

    def __init__(self, cfg_json: str, fold: int) -> None:
        import torch

        from pldistill.train.dataset import prepare_fold
        from pldistill.train.pseudo_target import fold_pseudo_targets
        from pldistill.train.teacher_cache import cache_examples, teacher_clips

        cfg = TrialConfig.model_validate_json(cfg_json)
        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        self.data = prepare_fold(cfg, fold)  # features from their on-disk cache
        self.teacher = _load_teacher(cfg, self.data, lambda m: None)  # fine-tuned by the driver already
        if torch.cuda.is_available():
            self.teacher.model.to("cuda")
        self.storage = cfg.model.teacher_cache_dtype
        self.examples = {ex.key: ex for ex in cache_examples(cfg, self.data)}
        self.train_keys = teacher_clips(self.data)
        self.pseudo_targets = fold_pseudo_targets(cfg, self.data)  # None under pseudo_target: label

    def __call__(self, batch: dict[str, Any]) -> Any:
        from pldistill.train.teacher_cache import cache_rows

        chunk = [self.examples[str(k)] for k in batch["key"]]
        return cache_rows(self.teacher, chunk, self.data.labels, teacher_keys=self.train_keys, storage=self.storage,
                          pseudo_targets=self.pseudo_targets)
