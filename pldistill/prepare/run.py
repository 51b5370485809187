"""Build what a sweep's trials read, each entry once, in dependency order; independent work side by side.

:func:`plan` turns trial configs (every variant and every sampled choice that changes what a trial
reads) into steps, one per artifact entry: configs equal in the fields an artifact's key covers share
its step. :func:`prepare_configs` runs them in three stages:

1. on the driver: the corpus (everything else reads it);
2. side by side, as Ray tasks when there is more than one: one task per fold building that fold's
   chain (features, teacher, eGeMAPS, EmoDistill's teachers and, on CPUs, its teacher caches, in
   that order), and one per shared artifact with no upstream (the student prior); a task holds a
   GPU when it fine-tunes or scores the teacher and the sweep's workers use GPUs;
3. when the workers use GPUs, on the driver: each fold's teacher cache with Ray Data, one actor per
   GPU over the fold's clips. On CPUs a fold's cache is built in its task instead: one actor per
   fold would add an actor's start (its imports, the teacher loaded again) to every cache and run
   no more at once than the fold tasks do. Both compute the same forward on the same batches of 16
   clips (``tests/integration/test_cache_build.py`` compares the rows; ``bench/prepare_cold.py``
   the predictions trained on either).

Torch threads in a task are the driver's (``train.num_threads`` when set): a thread count alone
changes the bytes a fine-tune produces, so an artifact built in a task equals one built in process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pldistill._fs import noting_builds
from pldistill.config import TrialConfig
from pldistill.errors import PldistillError
from pldistill.prepare.artifacts import ARTIFACTS, FoldWork, check_inputs, key_inputs, needed

__all__ = ["Step", "Entry", "PrepareOptions", "PrepareReport", "plan", "prepare_configs", "prepare_trial"]

Log = Callable[[str], None]
#: Built on the driver before anything else / after the tasks, with Ray Data (when workers use GPUs).
_FIRST, _LAST = ("corpus",), ("teacher_cache",)


@dataclass(frozen=True)
class Step:
    artifact: str
    fold: int | None
    cfg: TrialConfig


@dataclass
class Entry:
    """One artifact entry of the sweep: where it is and whether this preparation built it."""

    artifact: str
    fold: int | None
    path: str
    built: bool
    seconds: float


@dataclass
class PrepareReport:
    entries: list[Entry] = field(default_factory=list)
    wall_s: float = 0.0

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(e) for e in self.entries]


@dataclass
class PrepareOptions:
    log: Log = print
    #: The sweep's workers use GPUs: teacher work holds one GPU per task, and per cache actor.
    accelerator: bool = False
    #: Folds side by side as Ray tasks (and the teacher cache on Ray Data); False: all in this process.
    parallel: bool = True
    #: Starts (or attaches to) the caller's Ray when a stage needs it; None: a private one, stopped after.
    start_ray: Callable[[], object] | None = None
    address: str | None = None
    num_cpus: int | None = None
    cache_opts: Any = None  # pldistill.prepare.cache_build.CacheBuildOptions


def plan(configs: Iterable[TrialConfig]) -> list[Step]:
    """The steps ``configs`` need, upstream first, one per artifact entry (by the fields its key covers)."""
    seen: dict[tuple[str, int | None, str], Step] = {}
    for cfg in configs:
        for artifact in needed(cfg):
            for fold in (cfg.data.folds if artifact.per_fold else [None]):
                seen.setdefault((artifact.name, fold, key_inputs(artifact, cfg)), Step(artifact.name, fold, cfg))
    order = list(ARTIFACTS)
    return sorted(seen.values(), key=lambda s: (order.index(s.artifact), s.fold or 0))


def prepare_trial(cfg: TrialConfig, log: Log = print) -> TrialConfig:
    """Everything a trial of ``cfg`` reads, built in this process (no Ray); returns ``cfg``, so
    ``run_trial(prepare_trial(cfg))`` reads as it runs."""
    prepare_configs([cfg], PrepareOptions(log=log, parallel=False))
    return cfg


def prepare_configs(configs: Iterable[TrialConfig], opts: PrepareOptions | None = None) -> PrepareReport:
    """Build (or find) every entry ``configs`` need; the report lists each with whether it was built."""
    from pldistill.prepare.cache_build import CacheBuildOptions, stop_own_ray

    opts = opts or PrepareOptions()
    started = time.perf_counter()
    steps = plan(configs)
    cache_opts = opts.cache_opts or CacheBuildOptions(gpus_per_actor=1.0 if opts.accelerator else 0.0,
                                                      address=opts.address, num_cpus=opts.num_cpus,
                                                      start_ray=opts.start_ray)
    report = PrepareReport()
    threads = _threads(steps)
    on_ray_data = _LAST if opts.parallel and opts.accelerator else ()
    try:
        first = [s for s in steps if s.artifact in _FIRST]
        middle = [s for s in steps if s.artifact not in _FIRST + on_ray_data]
        report.entries += _run_steps(first, threads, opts.log, None)
        with noting_builds() as checking:  # reading the folds writes their features: those entries' builds
            check_inputs((s.cfg, s.fold) for s in steps)  # before any task: a user's error is one line
        report.entries += _run_side_by_side(_chains(middle), threads, opts, cache_opts)
        report.entries += _run_steps([s for s in steps if s.artifact in on_ray_data], threads, opts.log, cache_opts)
    finally:
        stop_own_ray(cache_opts)
    for e in report.entries:
        e.built = e.built or _was_built(Path(e.path), checking)
    report.wall_s = time.perf_counter() - started
    return report


def _chains(steps: list[Step]) -> list[list[Step]]:
    """The middle stage's independent units: one chain per fold (its steps in order), one per shared step."""
    by_fold: dict[int | None, list[Step]] = {}
    shared: list[list[Step]] = []
    for s in steps:
        if s.fold is None:
            shared.append([s])
        else:
            by_fold.setdefault(s.fold, []).append(s)
    return [*by_fold.values(), *shared]


def _threads(steps: list[Step]) -> int:
    import torch

    own = next((s.cfg.train.num_threads for s in steps if s.cfg.train.num_threads), None)
    return int(own or torch.get_num_threads())


def _run_steps(steps: list[Step], threads: int, log: Log, cache_opts: Any) -> list[Entry]:
    """Build ``steps`` in order in this process; a teacher cache with Ray Data when ``cache_opts`` is
    given, else its rows computed here."""
    import torch

    torch.set_num_threads(threads)  # as a trial does: oversubscribed threads made a fine-tune ~10x slower
    return [_build_step(s, log, cache_opts) for s in steps]


def _build_step(s: Step, log: Log, cache_opts: Any) -> Entry:
    """One step's entry, with whether it was (re)written meanwhile and the seconds it took."""
    t0 = time.perf_counter()
    with noting_builds() as journal:
        path = ARTIFACTS[s.artifact].build(FoldWork(s.cfg, s.fold, log, cache_opts))
    path = Path(path).resolve()
    return Entry(s.artifact, s.fold, str(path), _was_built(path, journal), time.perf_counter() - t0)


def _was_built(path: Path, journal: Iterable[Path]) -> bool:
    return any(p == path or path in p.parents for p in journal)  # the corpus entry holds what was built


def _run_side_by_side(chains: list[list[Step]], threads: int, opts: PrepareOptions, cache_opts: Any) -> list[Entry]:
    if not chains:
        return []
    if not opts.parallel or len(chains) == 1:
        return _in_graph_order([e for chain in chains for e in _run_steps(chain, threads, opts.log, None)])
    import ray

    from pldistill.prepare.cache_build import absolute_paths, ensure_ray

    ensure_ray(cache_opts)
    task = ray.remote(_chain_task)
    pending = {}
    for chain in chains:
        gpu = opts.accelerator and any(ARTIFACTS[s.artifact].accelerator for s in chain)
        ref = task.options(num_cpus=1, num_gpus=1 if gpu else 0).remote(
            # absolute paths: a task may run in another working directory
            [(s.artifact, s.fold, absolute_paths(s.cfg).to_json()) for s in chain], threads)
        pending[ref] = chain
    entries: list[Entry] = []
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        chain = pending.pop(ref)
        try:
            done, lines = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            # a bad manifest or checkpoint is the user's one-line error, as in-process; Ray's wrapper
            # would print the task's whole traceback. The other chains stop: writes are atomic, so
            # nothing they leave is half-written (a temporary is cleared by the next build).
            for other in pending:
                ray.cancel(other, force=True)
            raise exc.cause if isinstance(exc.cause, PldistillError) else exc from None
        for line in lines:
            opts.log(line)
        entries += [Entry(**e) for e in done]
        where = f"fold {chain[0].fold}" if chain[0].fold is not None else chain[0].artifact
        opts.log(f"prepared {where}: " + ", ".join(f"{e['artifact']} {'built' if e['built'] else 'reused'}"
                                                   for e in done))
    return _in_graph_order(entries)


def _in_graph_order(entries: list[Entry]) -> list[Entry]:
    """Upstream first, then by fold: the report's order, however the work was spread."""
    return sorted(entries, key=lambda e: (list(ARTIFACTS).index(e.artifact), e.fold or 0))


def _chain_task(steps: list[tuple[str, int | None, str]], threads: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Ray task: build one chain in order; its entries and the log lines it wrote (a task's own output
    does not reach the driver's console)."""
    lines: list[str] = []
    built = _run_steps([Step(a, f, TrialConfig.model_validate_json(c)) for a, f, c in steps], threads,
                       lines.append, None)
    # progress lines ("12/300 steps") are for a live console; what a task says at its end is the rest
    return [asdict(e) for e in built], [ln for ln in lines if " elapsed, " not in ln]
